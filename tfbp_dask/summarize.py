"""``tfbp-dask summarize RUN_DIR_OR_BATCH_DIR``: what a finished run or batch found.

For a run directory: per stage, the terms whose CI excludes 0 (at the run's levels,
or all at ``--ci_level``, recomputed from the stored bootstraps), and stage 4's
final selection. For a batch's output directory: the batch table (one line per
TF) and a count of its interaction terms by stage. Nothing is written unless
``--output`` is given (``.csv``: the table; anything else: the text printed).

Only ``typer`` is imported here; pandas comes with ``tfbp_dask.results`` when the
command runs, so the command line's help stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .config import OptionError
from .errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from .results import BatchResult, RunResult


def command(
    path: Annotated[
        Path,
        typer.Argument(
            help="A finished run directory, or the output directory of a batch (its latest).",
            show_default=False,
        ),
    ],
    ci_level: Annotated[
        float | None,
        typer.Option(
            "--ci_level",
            help="Judge every stage at this CI level (%), recomputed from the stored "
            "bootstraps (default: each stage's level of the run).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help="Also write the summary to this file: a .csv gets the table (a run: its "
            "significant terms; a batch: one row per TF), anything else the printed text.",
        ),
    ] = None,
) -> None:
    """Print the significant terms per stage of a run, or the summary of a batch."""
    if ci_level is not None and not 0.0 < ci_level < 100.0:
        raise OptionError(f"--ci_level must be in (0, 100), got {ci_level:g}")
    text, table = summarize(path, ci_level)
    typer.echo(text, nl=False)
    if output is not None:
        write_output(output, text, table)


def summarize(path: Path, ci_level: float | None = None) -> tuple[str, pd.DataFrame]:
    """The text ``summarize`` prints for ``path`` and its table (see ``command``)."""
    from .results import SUMMARY, batch_timestamps, read_batch, read_run

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: does not exist")
    if not path.is_dir():
        raise InputError(f"{path}: is not a directory (a run directory or a batch's)")
    if (path / SUMMARY).is_file() or path.name.endswith(".partial"):
        return _run_summary(read_run(path), ci_level)
    if batch_timestamps(path):
        return _batch_summary(read_batch(path), ci_level)
    raise InputError(
        f"{path}: neither a run directory (no {SUMMARY.as_posix()}) nor a batch's output "
        "directory (no batch_{timestamp}.csv)"
    )


def _run_summary(run: RunResult, ci_level: float | None) -> tuple[str, pd.DataFrame]:
    import pandas as pd

    lines = [f"{run.perturbed_tf} ({run.outcome}): {run.path}"]
    parts = []
    for name, stage in run.stages.items():
        significant = run.significant(name, ci_level)
        level = stage.ci_level if ci_level is None else ci_level
        lines.append(
            f"{name}: {len(significant)} of {len(stage.terms)} terms significant at the "
            f"{level:g}% CI ({len(stage.bootstrap_coefficients)} bootstraps)"
        )
        width = max((len(term) for term in significant["term"]), default=0)
        for row in significant.itertuples():
            lines.append(f"  {row.term:<{width}}  [{row.lower:.4g}, {row.upper:.4g}]")
        parts.append(significant.assign(stage=name))
    if run.interactors is not None:
        selection = run.interactors.final_selection
        chosen = ", ".join(f"{t} ({k})" for t, k in zip(selection["term"], selection["kind"]))
        lines.append(f"interactor significance ({run.interactors.method}): {chosen or 'none'}")
    if ci_level is not None and "topn" in run.stages:
        lines.append(
            "(the top-N stage's stored fits are of the terms the all-data stage kept at the "
            "run's level; stage 4 is shown as run)"
        )
    columns = ["stage", "term", "ci_level", "lower", "upper"]
    table = pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
    return "\n".join(lines) + "\n", table


def _batch_summary(batch: BatchResult, ci_level: float | None) -> tuple[str, pd.DataFrame]:
    import pandas as pd

    table = batch.table
    statuses = table["status"].value_counts()
    counts = ", ".join(f"{n} {status}" for status, n in statuses.items())
    lines = [f"batch {batch.timestamp}: {len(table)} TFs ({counts}) in {batch.output_dir}"]
    columns = ["perturbed_tf", "status", "n_significant_all_data", "n_significant_topn"]
    shown = table[columns + ["final_selection"]].copy()
    if ci_level is not None:
        for stage in ("all_data", "topn"):
            counts_at = [_count_at(batch, tf, stage, ci_level) for tf in shown["perturbed_tf"]]
            shown[f"n_significant_{stage}_at_{ci_level:g}"] = pd.array(counts_at, dtype="Int64")
    lines.append(shown.to_string(index=False))
    interactions = batch.interactions
    verdicts = interactions["stage4_verdict"].fillna("").value_counts()
    judged = ", ".join(f"{verdict} {n}" for verdict, n in verdicts.items() if verdict)
    lines.append(
        f"interaction terms kept by the all-data stage: {len(interactions)}; significant in "
        f"the top-N stage: {int(interactions['topn_significant'].fillna(False).sum())}; "
        f"stage-4 verdicts: {judged or 'none'}"
    )
    return "\n".join(lines) + "\n", shown


def _count_at(batch: BatchResult, tf: str, stage: str, ci_level: float):
    """Terms of ``tf``'s ``stage`` significant at ``ci_level`` (its run read now), or None."""
    if tf not in batch.run_dirs:
        return None
    run = batch.run(tf)
    return len(run.significant(stage, ci_level)) if stage in run.stages else None


def write_output(output: Path, text: str, table: pd.DataFrame) -> None:
    """``--output``: the table as CSV for a ``.csv`` name, else the text."""
    try:
        if output.suffix.lower() == ".csv":
            table.to_csv(output, index=False, lineterminator="\n")
        else:
            output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise InputError(f"--output {output}: cannot be written ({error.strerror})") from None
