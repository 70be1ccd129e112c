"""Reading finished runs and batches back: ``read_run`` and ``read_batch``.

A run directory holds every table twice, as CSV and as a typed Parquet twin
(``tables.write_table``). The tables are read from the twins, or from the CSVs
when the twins are absent (a directory copied without them), into the same
frames: text columns as text (an empty cell is ``""``), integers as int64,
the columns that are floats or booleans in the twins as floats or booleans.

``RunResult.significant`` judges a stage's stored bootstrap coefficients at
another CI level with the functions a run uses (``stats.confidence_table``), so
its terms are those a fresh run at that level finds (without
``--iterative_dropout``, whose rounds depend on the level). Every problem with
the path is an ``InputError`` of one line naming the path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import stats
from .batch_report import COLUMN_TYPES as INTERACTION_TYPES
from .errors import InputError
from .outputs import PARTIAL_SUFFIX
from .stage_files import STAGE_DIRS

SUMMARY = Path("input_data") / "data_summary.json"
STAGE_TABLES = (
    "bootstrap_coefficients",
    "model_statistics",
    "confidence_intervals",
    "feature_importance",
)
INTERACTOR_TABLES = ("significance_results", "comparison_statistics", "final_selection")
BATCH_TABLE = re.compile(r"^batch_(\d{8}_\d{6}(?:_\d+)?)\.csv$")

# Columns whose type the CSV alone cannot tell (an empty text cell, a float that
# happens to be whole); every other column keeps the type its CSV gives it.
_TEXT = {
    "term", "kind", "reason", "model", "interactor", "variant", "solver", "terms_kept",
    "feature", "perturbed_tf", "status", "run_dir", "final_selection", "error", "partner",
    "stage4_method", "stage4_verdict",
}  # fmt: skip
_FLOAT = {
    "ci_level", "lower", "upper", "alpha", "cv_mse", "r2", "mean", "median", "std",
    "selection_frequency", "avg_r2_interactor", "avg_r2_main_effect", "delta_r2",
    "r2_lasso_model", "coef_interactor", "coef_main_effect", "wall_seconds",
}  # fmt: skip
_BATCH_TYPES = {"n_significant_all_data": "Int64", "n_significant_topn": "Int64"}


def read_table(path_without_suffix: Path, floats: bool = False) -> pd.DataFrame:
    """One table of a run or batch: its Parquet twin, else its CSV, as the same frame.

    ``floats``: every column but the first is a float (``bootstrap_coefficients``); so
    is every column of a table whose first column is ``feature`` (the processed inputs)
    but that one, whatever the columns are called.
    """
    stem = Path(path_without_suffix)
    parquet = stem.with_name(stem.name + ".parquet")
    csv = stem.with_name(stem.name + ".csv")
    if parquet.is_file():
        frame = pd.read_parquet(parquet)
    elif csv.is_file():
        header = [str(c) for c in pd.read_csv(csv, nrows=0).columns]
        floats = floats or header[:1] == ["feature"]
        text = header[:1] if floats else [c for c in header if c in _TEXT]
        frame = pd.read_csv(  # ids such as 0001 stay as written
            csv,
            dtype=dict.fromkeys(text, "str"),
            keep_default_na=False,
            na_values=["", "nan", "NaN"],
        )
    else:
        raise InputError(f"{csv}: is missing (and so is its Parquet twin)")
    return _typed(frame, floats or [str(c) for c in frame.columns[:1]] == ["feature"])


def _typed(frame: pd.DataFrame, floats: bool) -> pd.DataFrame:
    types: dict[str, Any] = {}
    first = frame.columns[0] if len(frame.columns) else None
    for name, dtype in frame.dtypes.items():
        if floats:
            types[name] = "str" if name == first and name == "feature" else "float64"
            if name == first and name == "bootstrap":
                types[name] = "int64"
        elif name in INTERACTION_TYPES and "partner" in frame.columns:
            types[name] = INTERACTION_TYPES[name]
        elif name in _BATCH_TYPES and "status" in frame.columns:
            types[name] = _BATCH_TYPES[name]
        elif name in _TEXT:
            types[name] = "str"
        elif name in _FLOAT:
            types[name] = "float64"
        elif isinstance(dtype, np.dtype) and dtype.kind in "iu":
            types[name] = "int64"
    for name, kind in types.items():
        if kind in ("str", "string"):
            frame[name] = _text(frame[name])
    return frame.astype(types)


def _text(column: pd.Series) -> pd.Series:
    """Empty cells as ``""`` (a CSV column of empty cells alone reads as floats)."""
    return column.astype(object).where(column.notna(), "")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"{path}: is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{path}: cannot be read as JSON ({error})") from None


@dataclass(frozen=True, eq=False)
class StageTables:
    """One bootstrap stage of a run (``all_data`` or ``topn``), as written."""

    name: str
    ci_level: float
    terms: tuple[str, ...]
    significant_terms: tuple[str, ...]
    bootstrap_coefficients: pd.DataFrame
    model_statistics: pd.DataFrame
    confidence_intervals: pd.DataFrame
    feature_importance: pd.DataFrame
    iterative_dropout: pd.DataFrame | None = None

    @property
    def coefficients(self) -> np.ndarray:
        """The coefficients as an (n_bootstraps, n_terms) array, in design order."""
        return self.bootstrap_coefficients[list(self.terms)].to_numpy(dtype=float)


@dataclass(frozen=True, eq=False)
class InteractorTables:
    """Stage 4 of a run: ``method`` is ``linear`` or ``lasso``."""

    method: str
    significance_results: pd.DataFrame
    comparison_statistics: pd.DataFrame
    final_selection: pd.DataFrame


@dataclass(frozen=True, eq=False)
class RunResult:
    """A finished run directory, read back (``read_run``).

    Attributes
    ----------
    path : Path
    perturbed_tf, outcome : str
        ``outcome`` is ``completed`` or ``stopped at stage k: …``.
    summary : dict
        The whole ``data_summary.json``; ``options`` and ``reproducibility`` are its records.
    stages : dict
        ``all_data`` and (if it ran) ``topn`` -> ``StageTables``.
    interactors : InteractorTables or None
    """

    path: Path
    perturbed_tf: str
    outcome: str
    summary: dict[str, Any]
    stages: dict[str, StageTables]
    interactors: InteractorTables | None

    @property
    def options(self) -> dict[str, Any]:
        return self.summary.get("options", {})

    @property
    def reproducibility(self) -> dict[str, Any]:
        return self.summary.get("reproducibility", {})

    def stage(self, name: str) -> StageTables:
        """The tables of stage ``name``; an ``InputError`` if it did not run."""
        if name not in self.stages:
            ran = ", ".join(self.stages) or "none"
            raise InputError(f"{self.path}: stage {name!r} did not run (stages: {ran})")
        return self.stages[name]

    def confidence(self, stage: str, ci_level: float | None = None) -> pd.DataFrame:
        """``term, ci_level, lower, upper, significant`` of every term at ``ci_level``.

        Computed from the stored bootstrap coefficients with ``stats.confidence_table``,
        the function a run uses; the run's own level by default.
        """
        tables = self.stage(stage)
        level = tables.ci_level if ci_level is None else float(ci_level)
        if not 0.0 < level < 100.0:
            raise InputError(f"{self.path}: CI level must be in (0, 100), got {level:g}")
        return stats.confidence_table(tables.coefficients, tables.terms, level)

    def significant(self, stage: str, ci_level: float | None = None) -> pd.DataFrame:
        """The rows of ``confidence(stage, ci_level)`` whose interval excludes 0, in design
        order (``["term"]`` lists the terms)."""
        table = self.confidence(stage, ci_level)
        return table[table["significant"]].reset_index(drop=True)

    def table(self, relative: str | Path) -> pd.DataFrame:
        """Any table of the directory by its path without suffix, e.g.
        ``input_data/processed_response`` (the draws: ``draws``)."""
        return read_table(self.path / relative)

    def draws(self) -> np.ndarray:
        """The stage-1 draws, (n_bootstraps, n_rows) row positions into the processed inputs.

        From ``input_data/bootstrap_indices``: its Parquet twin (one list per bootstrap),
        else its CSV (one column per draw).
        """
        stem = self.path / "input_data" / "bootstrap_indices"
        parquet = stem.with_name(stem.name + ".parquet")
        if parquet.is_file():
            lists = pd.read_parquet(parquet, columns=["draws"])["draws"]
            return np.vstack([np.asarray(d, dtype=np.int64) for d in lists])
        frame = read_table(stem)
        return frame.drop(columns="bootstrap").to_numpy(dtype=np.int64)


def read_run(path: str | Path) -> RunResult:
    """Read a finished run directory: its stage tables, stage 4 and ``data_summary.json``.

    Raises
    ------
    InputError
        ``path`` is not a finished run directory, or a file a stage wrote is missing.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"run directory {path}: does not exist")
    if not path.is_dir():
        raise InputError(f"run directory {path}: is not a directory")
    if path.name.endswith(PARTIAL_SUFFIX):
        raise InputError(
            f"run directory {path}: an unfinished run (.partial); finish it with --resume"
        )
    if not (path / SUMMARY).is_file():
        raise InputError(f"run directory {path}: not a run directory (no {SUMMARY.as_posix()})")
    summary = _read_json(path / SUMMARY)
    if not isinstance(summary, dict) or "stages" not in summary:
        raise InputError(f"{path / SUMMARY}: not a run's data summary (no 'stages')")
    recorded = summary["stages"]
    stages = {}
    for name, directory in STAGE_DIRS.items():
        if name not in recorded:
            continue
        record = recorded[name]
        where = path / directory
        tables = {t: read_table(where / t, t == "bootstrap_coefficients") for t in STAGE_TABLES}
        dropout = None
        if record.get("dropout_rounds"):
            dropout = read_table(where / "iterative_dropout")
        stages[name] = StageTables(
            name=name,
            ci_level=float(record["ci_level"]),
            terms=tuple(c for c in tables["bootstrap_coefficients"].columns if c != "bootstrap"),
            significant_terms=tuple(record["significant_terms"]),
            iterative_dropout=dropout,
            **tables,
        )
    interactors = None
    if "interactors" in recorded:
        where = path / "interactor_significance"
        interactors = InteractorTables(
            recorded["interactors"]["method"], *(read_table(where / t) for t in INTERACTOR_TABLES)
        )
    return RunResult(
        path=path,
        perturbed_tf=str(summary.get("perturbed_tf", "")),
        outcome=str(summary.get("outcome", "")),
        summary=summary,
        stages=stages,
        interactors=interactors,
    )


@dataclass(frozen=True, eq=False)
class BatchResult:
    """A batch's tables in its output directory, read back (``read_batch``).

    Attributes
    ----------
    output_dir : Path
    timestamp : str
        Of the batch (``batch_{timestamp}.csv``).
    table : DataFrame
        ``batch_{timestamp}.csv``: one row per TF.
    interactions : DataFrame
        ``batch_{timestamp}_interactions``: one row per pTF:partner term stage 1 kept.
    """

    output_dir: Path
    timestamp: str
    table: pd.DataFrame
    interactions: pd.DataFrame
    _runs: dict[str, RunResult] = field(default_factory=dict, repr=False)

    @property
    def run_dirs(self) -> dict[str, Path]:
        """TF -> run directory, for the TFs that have one (not the failed ones)."""
        rows = self.table[self.table["run_dir"] != ""]
        return {tf: Path(d) for tf, d in zip(rows["perturbed_tf"], rows["run_dir"])}

    def run(self, perturbed_tf: str) -> RunResult:
        """The run of one TF, read when first asked for (then kept)."""
        if perturbed_tf not in self._runs:
            directories = self.run_dirs
            if perturbed_tf not in directories:
                raise InputError(
                    f"batch {self.output_dir / f'batch_{self.timestamp}.csv'}: "
                    f"no run directory for TF {perturbed_tf!r}"
                )
            self._runs[perturbed_tf] = read_run(directories[perturbed_tf])
        return self._runs[perturbed_tf]

    def runs(self) -> Iterator[RunResult]:
        """Every TF's run, read one by one as the iteration reaches it."""
        for tf in self.run_dirs:
            yield self.run(tf)


def batch_timestamps(output_dir: Path) -> list[str]:
    """Timestamps of the batches whose table is in ``output_dir``, oldest first."""
    found = (BATCH_TABLE.match(p.name) for p in Path(output_dir).glob("batch_*.csv"))
    return sorted(m.group(1) for m in found if m)


def read_batch(output_dir: str | Path, timestamp: str | None = None) -> BatchResult:
    """Read a batch's tables from its output directory (the latest batch, or ``timestamp``).

    The TFs' run directories are read only when asked for (``BatchResult.run``, ``runs``).

    Raises
    ------
    InputError
        ``output_dir`` holds no batch table (or not the one of ``timestamp``), or a file of
        the batch is missing.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        problem = "does not exist" if not output_dir.exists() else "is not a directory"
        raise InputError(f"batch output directory {output_dir}: {problem}")
    stamps = batch_timestamps(output_dir)
    if not stamps:
        raise InputError(f"batch output directory {output_dir}: no batch_{{timestamp}}.csv in it")
    if timestamp is None:
        timestamp = stamps[-1]
    elif timestamp not in stamps:
        raise InputError(f"batch output directory {output_dir}: no batch_{timestamp}.csv")
    table = read_table(output_dir / f"batch_{timestamp}")
    interactions = read_table(output_dir / f"batch_{timestamp}_interactions")
    return BatchResult(output_dir, timestamp, table, interactions)
