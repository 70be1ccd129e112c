"""The run directory and every file in it (SPEC §9).

A run writes into ``{run_dir}.partial/`` and renames it to ``{run_dir}`` only
when everything is written, so a finished directory is always complete. Every
table is written as CSV plus a typed Parquet twin; each file is written to a
temporary name and moved into place. Figures are handed to a *renderer*
(``render_here`` draws them at once; a run passes one that draws them on the
Dask workers) and written when they are ready, at the latest before the rename.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from . import plots
from .engines import BootstrapFits
from .interactors import InteractorResult
from .workflow import StageResult, WorkflowResult

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
CHECKPOINT_DIR = "checkpoints"
MANIFEST = "run_manifest.json"
_FIT_COLUMNS = ("bootstrap", "intercept", "alpha", "cv_mse", "n_iter", "r2")
STAGE_DIRS = {"all_data": "all_data_results", "topn": "topn_results"}
STAGE_TITLES = {"all_data": "all data", "topn": "top-N"}


class PlotHandle(Protocol):
    """A figure being drawn."""

    def done(self) -> bool:
        """True when ``result`` will not wait."""

    def result(self) -> bytes:
        """The PNG bytes (waiting for them if needed)."""


Renderer = Callable[..., PlotHandle]
"""``render(plot, *args)`` starts drawing ``plot(*args) -> bytes``; returns its handle."""


@dataclass(frozen=True)
class _Drawn:
    png: bytes

    def done(self) -> bool:
        return True

    def result(self) -> bytes:
        return self.png


def render_here(plot: Callable[..., bytes], *args: Any) -> PlotHandle:
    """Draw the figure now, in this process."""
    return _Drawn(plot(*args))


def timestamp_now() -> str:
    """``YYYYMMDD_HHMMSS`` of the local time."""
    return datetime.now().strftime("%Y%m%d_%H%M%S")


def ci_tag(level: float) -> str:
    """``98.0`` -> ``98-0`` (the published tool's file-name spelling)."""
    return f"{float(level):.1f}".replace(".", "-")


def write_table(frame: pd.DataFrame | dict[str, np.ndarray], path_without_suffix: Path) -> None:
    """Write ``frame`` as ``.csv`` and ``.parquet`` (same columns, typed).

    ``frame`` may also be a dict of equal-length arrays (skips pandas for very
    wide tables such as ``bootstrap_indices``).

    Both come from one Arrow table; Arrow writes CSV numbers about eight times
    faster than pandas (it matters for the wide ``bootstrap_indices`` and the
    processed inputs, once per TF of a batch). Numbers are written in their
    shortest round-trip form, booleans as ``true``/``false``.
    """
    if isinstance(frame, dict):
        table = pa.table(frame)
    else:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    csv_target = path_without_suffix.with_name(path_without_suffix.name + ".csv")
    parquet_target = path_without_suffix.with_name(path_without_suffix.name + ".parquet")
    with _atomic(csv_target) as temporary:
        _write_csv(frame, table, temporary)
    with _atomic(parquet_target) as temporary:
        pq.write_table(table, temporary)


def _write_csv(frame: pd.DataFrame | dict[str, np.ndarray], table: pa.Table, path: Path) -> None:
    """Header by Python's csv module, body streamed to the file by Arrow."""
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow([str(c) for c in table.column_names])
    try:
        with pa.OSFile(str(path), "wb") as handle:
            handle.write(header.getvalue().encode())
            pa_csv.write_csv(
                table,
                handle,
                write_options=pa_csv.WriteOptions(include_header=False, quoting_style="none"),
            )
    except pa.ArrowInvalid:  # a value needs quoting (a comma in an id): pandas quotes it
        pd.DataFrame(frame).to_csv(path, index=False, lineterminator="\n")


@contextmanager
def _atomic(target: Path) -> Iterator[Path]:
    """A temporary path next to ``target``, moved onto it once written."""
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes(data: bytes, path: Path) -> None:
    """Write ``data`` (e.g. a PNG) atomically."""
    with _atomic(path) as temporary:
        temporary.write_bytes(data)


def write_json(value: Any, path: Path) -> None:
    """Write JSON atomically (indent 2, a trailing newline)."""
    with _atomic(path) as temporary:
        temporary.write_text(json.dumps(value, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class RunDirectory:
    """``{output_dir}/{perturbed_tf}{suffix}_{timestamp}``, built in a ``.partial`` twin.

    Parameters
    ----------
    output_dir : Path
    perturbed_tf : str
    output_suffix : str
    timestamp : str, optional
        Defaults to now; bumped by a counter if that directory already exists.
    render : Renderer, optional
        Draws the figures; by default here, at once.
    """

    def __init__(
        self,
        output_dir: Path,
        perturbed_tf: str,
        output_suffix: str = "",
        timestamp: str = "",
        render: Renderer = render_here,
    ) -> None:
        self.timestamp = timestamp or timestamp_now()
        base = f"{perturbed_tf}{output_suffix}_{self.timestamp}"
        final = Path(output_dir) / base
        counter = 1
        while final.exists() or _partial(final).exists():
            counter += 1
            final = Path(output_dir) / f"{base}_{counter}"
        self.final_path = final
        self.path = _partial(final)
        self.path.mkdir(parents=True)
        self.finished = False
        self._render = render
        self._pending_plots: list[tuple[Path, PlotHandle]] = []

    @classmethod
    def reopen(cls, partial_path: Path, render: Renderer = render_here) -> RunDirectory:
        """The ``.partial`` directory of an interrupted run, to finish it."""
        partial_path = Path(partial_path)
        run_dir = cls.__new__(cls)
        final = partial_path.with_name(partial_path.name.removesuffix(PARTIAL_SUFFIX))
        run_dir.final_path = final
        run_dir.path = partial_path
        run_dir.timestamp = _timestamp_of(final.name)
        run_dir.finished = False
        run_dir._render = render
        run_dir._pending_plots = []
        return run_dir

    @property
    def log_path(self) -> Path:
        return self.path / f"tfbpmodeling_{self.timestamp}.log"

    def finish(self) -> Path:
        """Drop the checkpoints, move the complete directory into place; return its path."""
        self.write_plots()
        shutil.rmtree(self.path / CHECKPOINT_DIR, ignore_errors=True)
        (self.path / MANIFEST).unlink(missing_ok=True)
        if self.final_path.exists():
            raise FileExistsError(f"{self.final_path} exists; a finished run is never replaced")
        os.replace(self.path, self.final_path)
        self.path = self.final_path
        self.finished = True
        return self.final_path

    def write_plots(self, wait: bool = True) -> None:
        """Write the figures asked for so far: all of them, or (``wait=False``) those ready."""
        still_drawn = []
        for path, handle in self._pending_plots:
            if wait or handle.done():
                write_bytes(handle.result(), path)
            else:
                still_drawn.append((path, handle))
        self._pending_plots = still_drawn

    def _plot(self, path: Path, plot: Callable[..., bytes], *args: Any) -> None:
        self._pending_plots.append((path, self._render(plot, *args)))

    def write_inputs(self, result: WorkflowResult) -> None:
        """``input_data/``: processed frames (bootstrap draws come with stage 1)."""
        directory = self.path / "input_data"
        directory.mkdir(exist_ok=True)
        data = result.data
        response = data.response.rename_axis("feature").reset_index()
        predictors = data.predictors.rename_axis("feature").reset_index()
        write_table(response, directory / "processed_response")
        write_table(predictors, directory / "processed_predictors")

    def write_stage(self, result: WorkflowResult, stage: str) -> None:
        """Files of one finished stage (``all_data``, ``topn`` or ``interactors``).

        Its figures are written once drawn (``write_plots``), at the latest by ``finish``.
        """
        if stage == "interactors":
            assert result.interactors is not None
            self._write_interactors(result.interactors)
            return
        stage_result = result.all_data if stage == "all_data" else result.topn
        assert stage_result is not None
        self._write_bootstrap_stage(stage_result)
        if stage == "all_data":
            draws = stage_result.draws
            indices = {"bootstrap": stage_result.fits.bootstrap}
            indices.update({f"draw_{i}": draws[:, i] for i in range(draws.shape[1])})
            write_table(indices, self.path / "input_data" / "bootstrap_indices")
        name = "all_data_significant" if stage == "all_data" else "topn_significant"
        significant = stage_result.confidence[stage_result.confidence["significant"]]
        write_json(
            {row.term: [row.lower, row.upper] for row in significant.itertuples()},
            self.path / f"{name}_{ci_tag(stage_result.ci_level)}.json",
        )

    def _write_bootstrap_stage(self, stage: StageResult) -> None:
        directory = self.path / STAGE_DIRS[stage.name]
        plot_dir = directory / "diagnostic_plots"
        plot_dir.mkdir(parents=True, exist_ok=True)
        fits = stage.fits
        names = [term.name for term in stage.terms]
        coefficients = pd.DataFrame(fits.coef, columns=names)
        coefficients.insert(0, "bootstrap", fits.bootstrap)
        write_table(coefficients, directory / "bootstrap_coefficients")
        write_table(stage.confidence, directory / "confidence_intervals")
        statistics = pd.DataFrame(
            {
                "bootstrap": fits.bootstrap,
                "alpha": fits.alpha,
                "cv_mse": fits.cv_mse,
                "r2": fits.r2,
                "n_nonzero": fits.n_nonzero,
                "n_iter": fits.n_iter,
            }
        )
        write_table(statistics, directory / "model_statistics")
        write_table(stage.importance, directory / "feature_importance")
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
            write_table(rounds, directory / "iterative_dropout")
        title = (
            f"{STAGE_TITLES[stage.name]}: {len(stage.rows)} features, "
            f"{len(fits.bootstrap)} bootstraps"
        )
        self._plot(
            plot_dir / "coefficient_cis.png", plots.coefficient_forest, stage.importance, title
        )
        self._plot(plot_dir / "alpha_distribution.png", plots.alpha_distribution, fits.alpha, title)
        self._plot(
            plot_dir / "selection_frequency.png", plots.selection_frequency, stage.importance, title
        )

    def _write_interactors(self, interactors: InteractorResult) -> None:
        directory = self.path / "interactor_significance"
        plot_dir = directory / "interaction_plots"
        plot_dir.mkdir(parents=True, exist_ok=True)
        write_table(interactors.significance, directory / "significance_results")
        write_table(interactors.comparison, directory / "comparison_statistics")
        write_table(interactors.final_selection, directory / "final_selection")
        write_json(
            interactors.significance.to_dict(orient="records"),
            self.path / "interactor_vs_main_result.json",
        )
        title = f"interactor vs main effect ({interactors.method}, {interactors.n_rows} features)"
        self._plot(
            plot_dir / "delta_r2.png", plots.interactor_deltas, interactors.significance, title
        )

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(summary, self.path / "input_data" / "data_summary.json")

    # Checkpoints ---------------------------------------------------------------

    def save_manifest(self, manifest: dict[str, Any]) -> None:
        """What a resumed run must match (inputs' sha256, options, seed)."""
        write_json(manifest, self.path / MANIFEST)

    def save_chunk(self, label: str, fits: BootstrapFits) -> None:
        """Persist one chunk of fitted bootstraps (Parquet, written atomically)."""
        directory = self.path / CHECKPOINT_DIR / label
        directory.mkdir(parents=True, exist_ok=True)
        columns = {name: getattr(fits, name) for name in _FIT_COLUMNS}
        columns.update({f"coef_{j}": fits.coef[:, j] for j in range(fits.coef.shape[1])})
        target = directory / f"b{fits.bootstrap[0]:06d}-{fits.bootstrap[-1]:06d}.parquet"
        with _atomic(target) as temporary:
            pq.write_table(pa.table(columns), temporary)

    def load_chunks(self, label: str) -> BootstrapFits | None:
        """Every checkpointed bootstrap of ``label``, or None."""
        directory = self.path / CHECKPOINT_DIR / label
        files = sorted(directory.glob("b*.parquet")) if directory.is_dir() else []
        if not files:
            return None
        parts = []
        for path in files:
            table = pd.read_parquet(path)
            coef_columns = [c for c in table.columns if c.startswith("coef_")]
            parts.append(
                BootstrapFits(
                    coef=table[coef_columns].to_numpy(dtype=float).reshape(len(table), -1),
                    **{name: table[name].to_numpy() for name in _FIT_COLUMNS},
                )
            )
        return BootstrapFits.concatenate(parts)


def read_manifest(partial_path: Path) -> dict[str, Any] | None:
    """The manifest of an interrupted run, or None when there is none."""
    path = Path(partial_path) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _timestamp_of(name: str) -> str:
    """``TF1_suffix_20240115_143022[_2]`` -> ``20240115_143022``."""
    parts = name.split("_")
    for i in range(len(parts) - 1):
        if len(parts[i]) == 8 and parts[i].isdigit() and len(parts[i + 1]) == 6:
            return f"{parts[i]}_{parts[i + 1]}"
    return timestamp_now()


def _partial(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)
