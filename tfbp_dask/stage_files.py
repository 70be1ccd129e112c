"""Which tables and figures each stage of a run writes, and where (SPEC §9).

Pure lists: ``outputs.RunDirectory`` decides who writes them (this process, or the
workers that see the directory) and when; ``tables.py`` how each is encoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from . import plots
from .interactors import InteractorResult
from .tables import Figure, Matrix
from .workflow import StageResult

STAGE_DIRS = {"all_data": "all_data_results", "topn": "topn_results"}
STAGE_TITLES = {"all_data": "all data", "topn": "top-N"}


def bootstrap_stage_files(
    run_path: Path, stage: StageResult, figures: bool = True
) -> tuple[list[tuple[Any, Path]], list[Figure]]:
    """The tables and figures of a bootstrap stage, at their paths without suffix.

    Its directory (and, with ``figures``, ``diagnostic_plots/``) is made here.
    """
    directory = run_path / STAGE_DIRS[stage.name]
    plot_dir = directory / "diagnostic_plots"
    (plot_dir if figures else directory).mkdir(parents=True, exist_ok=True)
    fits = stage.fits
    names = [term.name for term in stage.terms]
    statistics = {
        "bootstrap": fits.bootstrap,
        "alpha": fits.alpha,
        "cv_mse": fits.cv_mse,
        "r2": fits.r2,
        "n_nonzero": fits.n_nonzero,
        "n_iter": fits.n_iter,
        "max_iter_reached": fits.max_iter_reached,
        "solver": [stage.solver] * len(fits.bootstrap),
    }
    tables = [
        (Matrix(fits.bootstrap, fits.coef, names), directory / "bootstrap_coefficients"),
        (stage.confidence, directory / "confidence_intervals"),
        (statistics, directory / "model_statistics"),
        (stage.importance, directory / "feature_importance"),
    ]
    if stage.dropout_rounds:
        rounds = pd.DataFrame(
            {
                "round": [r.round for r in stage.dropout_rounds],
                "ci_level": [r.ci_level for r in stage.dropout_rounds],
                "n_terms_in": [len(r.terms_in) for r in stage.dropout_rounds],
                "n_terms_kept": [len(r.terms_kept) for r in stage.dropout_rounds],
                "terms_kept": [";".join(r.terms_kept) for r in stage.dropout_rounds],
            }
        )
        tables.append((rounds, directory / "iterative_dropout"))
    title = (
        f"{STAGE_TITLES[stage.name]}: {len(stage.rows)} features, {len(fits.bootstrap)} bootstraps"
    )
    drawn = [
        (plot_dir / "coefficient_cis.png", plots.coefficient_forest, (stage.importance, title)),
        (plot_dir / "alpha_distribution.png", plots.alpha_distribution, (fits.alpha, title)),
        (
            plot_dir / "selection_frequency.png",
            plots.selection_frequency,
            (stage.importance, title),
        ),
    ]
    return tables, drawn


def interactor_files(
    run_path: Path, interactors: InteractorResult, figures: bool = True
) -> tuple[list[tuple[Any, Path]], list[Figure]]:
    """Stage 4's tables and its figure (``interactor_significance/``, made here)."""
    directory = run_path / "interactor_significance"
    plot_dir = directory / "interaction_plots"
    (plot_dir if figures else directory).mkdir(parents=True, exist_ok=True)
    title = f"interactor vs main effect ({interactors.method}, {interactors.n_rows} features)"
    delta_r2 = (
        plot_dir / "delta_r2.png",
        plots.interactor_deltas,
        (interactors.significance, title),
    )
    tables = [
        (interactors.significance, directory / "significance_results"),
        (interactors.comparison, directory / "comparison_statistics"),
        (interactors.final_selection, directory / "final_selection"),
    ]
    return tables, [delta_r2]
