"""``--compat tfbpmodeling``: the numbers of the published tfbpmodeling code, not of its help page.

The published code departs from its own documentation in ways that change
numbers or verdicts (``docs/compat.md`` lists each with where it happens).
By default (``--compat none``) this project follows the documentation; with
``--compat tfbpmodeling`` the small functions here translate a run's options
into the per-stage settings the published code actually used:

* default ``--bins`` ``0,8,64,512,np.inf`` (``PUBLISHED_DEFAULT_BINS``);
* the top-N stage stratifies with those fixed bins whatever ``--bins`` says;
* the top-N seed is ``seed + 10`` except that seed 0 stays 0;
* iterative dropout judges every round at ``--stabilization_ci_start``;
* stage 4 always runs on the top-N rows, on an unscaled design, and its
  "linear" comparison fits, in each of the 4 folds, a ``LassoCV`` (5 unshuffled
  inner folds, ``random_state`` = last bootstrap index) instead of least squares;
  the ``--stage4_lasso`` fit also uses that ``random_state``.

What stays fixed under both modes: rows sorted by feature id (the published
code ends up sorted too, see ``docs/compat.md``), a seed drawn and recorded when
``--random_state`` is not given, the timestamped run directory.

``stage_files`` names, under compat, the JSON and text files the published code
writes that scripts read (no pickles); the run directory writes them.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .config import WorkflowConfig
    from .workflow import WorkflowResult

logger = logging.getLogger(__name__)

NONE = "none"
TFBPMODELING = "tfbpmodeling"
MODES = (NONE, TFBPMODELING)

#: The published code's default ``--bins`` and the bins its top-N stage always used.
PUBLISHED_DEFAULT_BINS = (0.0, 8.0, 64.0, 512.0, math.inf)
PUBLISHED_TOPN_BINS = PUBLISHED_DEFAULT_BINS
TOPN_SEED_OFFSET = 10
#: Inner folds of the ``LassoCV`` the published "linear" stage 4 fits in each fold
#: (scikit-learn's default ``cv=None``: unshuffled ``KFold(5)``).
PUBLISHED_STAGE4_INNER_FOLDS = 5


def enabled(config: WorkflowConfig) -> bool:
    """True under ``--compat tfbpmodeling``."""
    return getattr(config, "compat", NONE) == TFBPMODELING


def default_bins(mode: str) -> tuple[float, ...]:
    """``--bins`` when not given: the documented default, or the published code's."""
    from .config import DEFAULT_BINS

    return PUBLISHED_DEFAULT_BINS if mode == TFBPMODELING else DEFAULT_BINS


def stage1_bins(config: WorkflowConfig) -> tuple[float, ...]:
    """Bins of the all-data stage (and of its dropout rounds): ``--bins`` in both modes."""
    return tuple(config.bins)


def topn_bins(config: WorkflowConfig) -> tuple[float, ...]:
    """Bins of the top-N stage: ``--bins``, or the published code's fixed bins."""
    return PUBLISHED_TOPN_BINS if enabled(config) else tuple(config.bins)


def stage4_bins(config: WorkflowConfig) -> tuple[float, ...]:
    """Bins of stage 4: ``--bins`` in both modes."""
    return tuple(config.bins)


def topn_seed(config: WorkflowConfig, seed: int) -> int:
    """Seed of the top-N draws: ``seed + 10``; the published code left seed 0 at 0."""
    if enabled(config) and seed == 0:
        return 0
    return seed + TOPN_SEED_OFFSET


def dropout_level(config: WorkflowConfig, round_number: int) -> float:
    """CI level of iterative-dropout round ``round_number`` (0-based).

    Documented: rising from ``--stabilization_ci_start`` by ``--stabilization_ci_step``
    per round up to ``--all_data_ci_level``; published code: fixed at the start level.
    """
    if enabled(config):
        return float(config.stabilization_ci_start)
    return min(
        config.stabilization_ci_start + round_number * config.stabilization_ci_step,
        config.all_data_ci_level,
    )


def stage4_uses_topn(config: WorkflowConfig) -> bool:
    """Stage 4 rows: ``--stage4_topn`` decides; the published code always used the top N."""
    return True if enabled(config) else bool(config.stage4_topn)


def stage4_scale_by_std(config: WorkflowConfig) -> bool:
    """The published code built the stage-4 design without ``--scale_by_std``."""
    return False if enabled(config) else bool(config.scale_by_std)


def stage4_options(config: WorkflowConfig) -> dict[str, Any]:
    """Extra keyword arguments of ``interactors.evaluate_interactors`` (empty by default).

    Under compat: the per-fold LassoCV scorer for the "linear" method, the main
    effect appended last in each variant (as the published code lists it), and the
    seed of the ``LassoCV`` the published code reused: its estimator's
    ``random_state`` was left at the last bootstrap index of the top-N stage.
    """
    if not enabled(config):
        return {}
    seed = int(config.n_bootstraps) - 1
    max_iter = int(config.max_iter)

    def fold_r2(X: np.ndarray, y: np.ndarray, test_fold: np.ndarray) -> np.ndarray:
        return lasso_fold_r2(X, y, test_fold, seed=seed, max_iter=max_iter)

    return {"fold_r2": fold_r2, "variant_last": True, "lasso_seed": seed}


def lasso_fold_r2(
    X: np.ndarray, y: np.ndarray, test_fold: np.ndarray, *, seed: int, max_iter: int
) -> np.ndarray:
    """Test-fold R² of the published "linear" stage 4: a ``LassoCV`` fitted per fold.

    Its design has a constant column first (the formula's intercept, never dropped
    there); centred by the intercept fit it stays zero, but it takes part in the
    random choice of coordinates, so it is kept to follow the same sequence.
    """
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LassoCV

    from .resampling import N_FOLDS
    from .stats import r2

    X = np.column_stack([np.ones(len(y)), np.asarray(X, dtype=float)])
    scores = []
    unconverged = 0
    for fold in range(N_FOLDS):
        test = test_fold == fold
        train = ~test
        model = LassoCV(
            fit_intercept=True,
            selection="random",
            alphas=100,
            random_state=seed,
            max_iter=max_iter,
            cv=PUBLISHED_STAGE4_INNER_FOLDS,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(X[train], y[train])
        unconverged += sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        scores.append(r2(y[test], model.predict(X[test])))
    if unconverged:
        logger.warning(
            "stage 4 (--compat tfbpmodeling): %d LassoCV paths of the per-fold fits did not "
            "converge within --max_iter %d",
            unconverged,
            max_iter,
        )
    return np.asarray(scores)


def record(config: WorkflowConfig, seed: int) -> dict[str, Any]:
    """``data_summary.json``'s ``compat`` record: the mode and the settings it implies."""
    mode = getattr(config, "compat", NONE)
    from .config import format_bins

    return {
        "mode": mode,
        "bins": {
            "all_data": format_bins(stage1_bins(config)),
            "topn": format_bins(topn_bins(config)),
            "interactors": format_bins(stage4_bins(config)),
        },
        "topn_seed": topn_seed(config, seed),
        "dropout_ci_levels": "fixed at --stabilization_ci_start"
        if enabled(config)
        else "rising by --stabilization_ci_step up to --all_data_ci_level",
        "interactor_rows": "top-N" if stage4_uses_topn(config) else "all modeled rows",
        "interactor_linear_model": "LassoCV per fold (published code)"
        if enabled(config)
        else "ordinary least squares",
        "interactor_scale_by_std": stage4_scale_by_std(config),
    }


# ---- files the published code writes that scripts read ---------------------------------


def _dumps(value: Any) -> str:
    """JSON as the published code writes it (``json.dump(..., indent=4)``)."""
    return json.dumps(value, indent=4)


def ci_key(level: float) -> str:
    """The published code's key of a CI level (``f"{float}"``: ``98.0``)."""
    return f"{float(level)}"


def significant_tag(level: float) -> str:
    """The published code's file tag of a CI level (``98.0`` -> ``98-0``)."""
    return str(float(level)).replace(".", "-")


def result_object(stage: Any) -> dict[str, dict[str, list[float]]]:
    """``{level: {term: [lower, upper]}}`` over every term, as ``result_obj.json``.

    After an iterative-dropout round that kept nothing the published code keeps
    that round's level and intervals; otherwise the stage's level.
    """
    from . import stats

    names = [term.name for term in stage.terms]
    level = stage.ci_level
    rounds = getattr(stage, "dropout_rounds", [])
    if rounds and not rounds[-1].terms_kept:
        level = rounds[-1].ci_level
    lower, upper = stats.percentile_ci(stage.fits.coef, level)
    return {
        ci_key(level): {name: [float(lo), float(hi)] for name, lo, hi in zip(names, lower, upper)}
    }


def stage_files(result: WorkflowResult, stage: str) -> dict[str, str | None]:
    """Under compat, what the published code writes for a finished stage (no pickles).

    By path in the run directory, each file's text: ``{all_data,topn}_result_object/
    result_obj.json`` (intervals of every term), ``selected_variables_ci_{i}.txt`` per
    dropout round that kept terms, ``*_significant_*.json`` in the published spelling,
    and ``interactor_vs_main_result.json`` as a list of records. ``None`` for a file
    the published code does not write: ``*_significant_*.json`` when nothing is
    significant. Empty without compat. ``RunDirectory.write_stage`` writes them.
    """
    if not enabled(result.config):
        return {}
    if stage == "interactors":
        assert result.interactors is not None
        records = [
            {key: _plain(value) for key, value in row.items()}
            for row in result.interactors.significance.to_dict(orient="records")
        ]
        return {"interactor_vs_main_result.json": _dumps(records)}
    from .outputs import ci_tag

    stage_result = result.all_data if stage == "all_data" else result.topn
    assert stage_result is not None
    files: dict[str, str | None] = {
        f"{stage}_result_object/result_obj.json": _dumps(result_object(stage_result))
    }
    kept = [r for r in stage_result.dropout_rounds if r.terms_kept]
    for i, dropout_round in enumerate(kept):
        files[f"selected_variables_ci_{i}.txt"] = "".join(
            f"{name}\n" for name in dropout_round.terms_kept
        )
    name = "all_data_significant" if stage == "all_data" else "topn_significant"
    significant = stage_result.confidence[stage_result.confidence["significant"]]
    if significant.empty:  # neither spelling
        for tag in (ci_tag(stage_result.ci_level), significant_tag(stage_result.ci_level)):
            files[f"{name}_{tag}.json"] = None
    else:
        files[f"{name}_{significant_tag(stage_result.ci_level)}.json"] = _dumps(
            {row.term: [float(row.lower), float(row.upper)] for row in significant.itertuples()}
        )
    return files


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers for ``json``."""
    return value.item() if hasattr(value, "item") else value
