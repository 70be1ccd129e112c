"""The batch's interaction table and heatmap: every pTF:partner term a stage kept.

A batch keeps, per TF, only a few ``Interaction`` rows (made as soon as the
TF finishes, from its ``WorkflowResult``; or read back from its run directory
when it finished in an earlier, interrupted batch), never the TF's arrays. At
the end they become ``batch_{timestamp}_interactions.csv`` (+ ``.parquet``)
and ``batch_{timestamp}_interactions.png``.

A row is an interaction term ``{pTF}:{partner}`` that stage 1 (all data) found
significant; only such terms go on to the top-N stage and stage 4. Other
terms (``--ptf_main_effect``, powers, ``row_max``, ``--add_model_variables``)
are not pTF × partner pairs and are not listed. Numbers are taken from the
stages' feature-importance tables (``stats.feature_importance``: percentile
CI bounds, median, selection frequency = share of bootstraps with a non-zero
coefficient) and from stage 4's tables; nothing is recomputed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from . import plots
from .outputs import Renderer, render_here
from .stage_files import STAGE_DIRS
from .tables import write_bytes, write_table
from .workflow import WorkflowResult

logger = logging.getLogger(__name__)

VERDICTS = ("interactor", "main_effect", "neither")
"""Stage 4's choice for an interaction term: the term itself, its partner's
main effect in its place, or (``--stage4_lasso`` only) neither; ``""`` when
stage 4 did not judge the term (not significant in the top-N stage, or not reached)."""


class Interaction(NamedTuple):
    """One row of ``batch_{timestamp}_interactions.csv``.

    Bounds, medians and selection frequencies of the top-N stage are NaN (and
    ``topn_significant`` is missing) when that stage did not run. The stage-4
    columns are empty (NaN) for a term stage 4 did not judge; ``delta_r2``
    (average cross-validated R² with the partner's main effect in place of the
    term, minus with the term: negative when the term is better) is NaN with
    ``--stage4_lasso``.
    """

    perturbed_tf: str
    partner: str
    term: str
    all_data_ci_level: float
    all_data_lower: float
    all_data_upper: float
    all_data_median: float
    all_data_selection_frequency: float
    topn_ci_level: float
    topn_lower: float
    topn_upper: float
    topn_median: float
    topn_selection_frequency: float
    topn_significant: bool | None
    stage4_method: str
    stage4_verdict: str
    delta_r2: float


COLUMN_TYPES = {
    name: "string"
    if name in ("perturbed_tf", "partner", "term", "stage4_method", "stage4_verdict")
    else "boolean"
    if name == "topn_significant"
    else "float64"
    for name in Interaction._fields
}

_NAN = math.nan
_STAGE_COLUMNS = ("lower", "upper", "median", "selection_frequency")


class _Stage(NamedTuple):
    importance: pd.DataFrame  # stats.feature_importance columns
    ci_level: float


class _Stage4(NamedTuple):
    method: str
    significance: pd.DataFrame
    final_selection: pd.DataFrame


def interaction_rows(result: WorkflowResult) -> tuple[Interaction, ...]:
    """The rows of one finished TF (empty when stage 1 kept no interaction term)."""
    stage1 = result.all_data
    if stage1 is None:
        return ()
    partners = {
        term.name: term.column for term in stage1.significant_terms if term.kind == "interaction"
    }
    topn = result.topn
    stage4 = result.interactors
    return _rows(
        result.data.perturbed_tf,
        partners,
        _Stage(stage1.importance, stage1.ci_level),
        None if topn is None else _Stage(topn.importance, topn.ci_level),
        None
        if stage4 is None
        else _Stage4(stage4.method, stage4.significance, stage4.final_selection),
    )


def read_interaction_rows(run_dir: Path) -> tuple[Interaction, ...]:
    """The rows of a finished run directory (a TF ``done earlier`` in a resumed batch).

    Equal to ``interaction_rows`` of the run's result: the same tables, read
    from their Parquet twins, and the stage summaries of ``data_summary.json``.
    """
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "input_data" / "data_summary.json").read_text())
    stages = summary.get("stages", {})
    if "all_data" not in stages:
        return ()
    ptf = summary["perturbed_tf"]
    # Interaction terms are named "{pTF}:{partner}"; a main effect of that name
    # could only come from --add_model_variables.
    added = set(summary.get("options", {}).get("add_model_variables", ()))
    prefix = f"{ptf}:"
    partners = {
        name: name[len(prefix) :]
        for name in stages["all_data"]["significant_terms"]
        if name.startswith(prefix) and name not in added
    }

    def stage(name: str) -> _Stage | None:
        if name not in stages:
            return None
        importance = pd.read_parquet(run_dir / STAGE_DIRS[name] / "feature_importance.parquet")
        return _Stage(importance, float(stages[name]["ci_level"]))

    stage4 = None
    if "interactors" in stages:
        directory = run_dir / "interactor_significance"
        stage4 = _Stage4(
            stages["interactors"]["method"],
            pd.read_parquet(directory / "significance_results.parquet"),
            pd.read_parquet(directory / "final_selection.parquet"),
        )
    return _rows(ptf, partners, stage("all_data"), stage("topn"), stage4)


def _rows(
    ptf: str,
    partners: Mapping[str, str],
    all_data: _Stage,
    topn: _Stage | None,
    stage4: _Stage4 | None,
) -> tuple[Interaction, ...]:
    """One row per interaction term of ``partners`` (term name -> partner), in that order."""
    if not partners:
        return ()
    first = all_data.importance.set_index("term")
    second = None if topn is None else topn.importance.set_index("term")
    verdicts = _verdicts(stage4) if stage4 is not None else {}
    rows = []
    for term, partner in partners.items():
        a = first.loc[term]
        in_topn = second is not None and term in second.index
        b = second.loc[term] if in_topn else None
        method, verdict, delta = verdicts.get(term, ("", "", _NAN))
        rows.append(
            Interaction(
                ptf,
                partner,
                term,
                float(all_data.ci_level),
                *(float(a[column]) for column in _STAGE_COLUMNS),
                float(topn.ci_level) if topn is not None else _NAN,
                *(float(b[column]) if in_topn else _NAN for column in _STAGE_COLUMNS),
                bool(b["significant"]) if in_topn else None,
                method,
                verdict,
                delta,
            )
        )
    return tuple(rows)


def _verdicts(stage4: _Stage4) -> dict[str, tuple[str, str, float]]:
    """Term -> (method, verdict, ΔR²) for the terms stage 4 judged (its ``final_selection``)."""
    kinds = dict(zip(stage4.final_selection["term"], stage4.final_selection["kind"]))
    significance = stage4.significance
    deltas = significance["delta_r2"] if "delta_r2" in significance else [_NAN] * len(significance)
    verdicts = {}
    for term, variant, delta in zip(significance["interactor"], significance["variant"], deltas):
        if kinds.get(term) == "interactor":
            verdict = "interactor"
        elif kinds.get(variant) == "main_effect":
            verdict = "main_effect"
        else:
            verdict = "neither"
        verdicts[term] = (stage4.method, verdict, float(delta))
    return verdicts


def interactions_table(rows: Iterable[Interaction]) -> pd.DataFrame:
    """The rows as a typed table (the columns of ``Interaction``, even with no row)."""
    table = pd.DataFrame(list(rows), columns=list(Interaction._fields))
    return table.astype(COLUMN_TYPES)


def write_interactions(
    output_dir: Path,
    timestamp: str,
    rows: Iterable[Interaction],
    n_tfs: int,
    render: Renderer = render_here,
) -> Path:
    """Write ``batch_{timestamp}_interactions`` ``.csv``, ``.parquet`` and ``.png``.

    ``n_tfs`` (the TFs of the batch) only goes into the figure's title. ``render``
    draws the heatmap (``Executor.render``: on a worker, so that a genome's
    figure, 150 x 150 cells and their labels, never swells the client).
    Returns the CSV's path.
    """
    table = interactions_table(rows)
    path = Path(output_dir) / f"batch_{timestamp}_interactions"
    write_table(table, path)
    title = (
        f"batch {timestamp}: {table['term'].nunique()} interaction terms kept, "
        f"{table['perturbed_tf'].nunique()} of {n_tfs} TFs"
    )
    png = render(plots.interaction_heatmap, table, title).result()
    write_bytes(png, path.with_name(path.name + ".png"))
    logger.info("batch interactions: %s.csv (%d rows) and .png", path, len(table))
    return path.with_name(path.name + ".csv")
