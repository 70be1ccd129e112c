"""The run directory and every file in it (SPEC §9).

A run writes into ``{run_dir}.partial/`` and renames it to ``{run_dir}`` only
when everything is written, so a finished directory is always complete. Every
table is written as CSV plus a typed Parquet twin; each file is written to a
temporary name and moved into place. Figures are handed to a *renderer*
(``render_here`` draws them at once; a run passes one that draws them on the
Dask workers) and written when they are ready, at the latest before the rename.
Given an *offload* (the run passes one when the Dask workers see the output
directory), tables, figures and checkpoints are written by the workers
instead (``write_files``, ``write_checkpoint``), the same bytes.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import os
import shutil
import uuid
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
from .precheck import MANIFEST
from .workflow import StageResult, WorkflowResult

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
CHECKPOINT_DIR = "checkpoints"
_FIT_COLUMNS = ("bootstrap", "intercept", "alpha", "cv_mse", "n_iter", "r2", "max_iter_reached")
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


def write_table(
    frame: pd.DataFrame | dict[str, np.ndarray], path_without_suffix: Path, twin: bool = True
) -> None:
    """Write ``frame`` as ``.csv`` and (``twin``) ``.parquet`` (same columns, typed).

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
    if twin:
        with _atomic(parquet_target) as temporary:
            _write_parquet(table, temporary)


def _write_parquet(table: pa.Table, path: Path) -> None:
    """Compact but lossless: zstd; integers delta-packed, floats byte-stream-split.

    Dictionaries only for text columns (numbers rarely repeat: a dictionary of
    random draws is larger than the draws). At 1000 bootstraps x 6000 rows the
    uint16 ``bootstrap_indices`` twin takes 12 MB this way, 31 MB with Arrow's
    defaults (int32, dictionaries, snappy).
    """
    encodings = {}
    for field in table.schema:
        if pa.types.is_integer(field.type):
            encodings[field.name] = "DELTA_BINARY_PACKED"
        elif pa.types.is_floating(field.type):
            encodings[field.name] = "BYTE_STREAM_SPLIT"
    dictionary = [name for name in table.column_names if name not in encodings]
    pq.write_table(
        table,
        path,
        compression="zstd",
        use_dictionary=dictionary,
        column_encoding=encodings or None,
    )


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
    # A name of its own: two TFs of a batch may write the same shared file at once.
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
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


@dataclass(frozen=True)
class Writing:
    """How a run directory's files get written.

    Attributes
    ----------
    render : Renderer
        Draws a figure (``Executor.render``: on a worker), when the client writes.
    offload : Renderer, optional
        Runs a writing function where the workers see the directory
        (``Executor.write``); None: the client writes every file.
    one_task_per_stage : bool
        A stage's tables and figures as one offloaded task (a batch).
    share : callable, optional
        ``Executor.shared``: the cluster's copy of a batch's checked predictors,
        from which a worker writes a TF's processed predictors.
    input_twins : bool
        Parquet twins of the ``input_data/`` tables (``--no_input_parquet`` turns them off).
    draw : Renderer, optional
        Runs the function that draws and writes one figure where ``offload`` would (used
        only with ``offload`` and not ``one_task_per_stage``; ``Executor.draw_figure``: a
        process of its own beside a cluster of threads); by default ``offload``.
    figures : bool
        Draw the diagnostic figures (a batch's TFs skip them unless ``--batch_figures``).
    store : BatchStore, optional
        A batch's files shared by its TFs: ``input_data/processed_predictors.*`` and
        ``bootstrap_indices.*`` become hard links to them (see ``BatchStore``).
    """

    render: Renderer = render_here
    offload: Renderer | None = None
    one_task_per_stage: bool = False
    share: Callable[[Any], Any] | None = None
    input_twins: bool = True
    draw: Renderer | None = None
    figures: bool = True
    store: BatchStore | None = None


@dataclass(frozen=True)
class BatchStore:
    """``{output_dir}/batch_{timestamp}_input_data/``: files that a batch's TFs share.

    A run directory of the batch holds hard links to them (a copy where the file
    system has none): its ``input_data/processed_predictors.*`` is the batch's table
    of predictors on every row a TF of these inputs may model (``predictors``: one
    table per set of input files, written before the TFs start), and its
    ``input_data/bootstrap_indices.*`` the draws of its seed, written by the first TF
    that makes them (TFs with the same seed and row count draw the same rows: the
    same bytes as a single run's file). Copied with ``cp -r`` or ``rsync`` without
    ``-H``, a run directory keeps its own copy of each.

    Attributes
    ----------
    directory : Path
    predictors : dict
        ``(response, predictors, blacklist)`` resolved paths (as ``str``; the blacklist
        may be None) to the stem of that input set's table in ``directory``.
    """

    directory: Path
    predictors: dict[tuple[str, str, str | None], str]

    @staticmethod
    def inputs_key(
        response_file: Path, predictors_file: Path, blacklist_file: Path | None
    ) -> tuple[str, str, str | None]:
        return (
            str(Path(response_file).resolve()),
            str(Path(predictors_file).resolve()),
            None if blacklist_file is None else str(Path(blacklist_file).resolve()),
        )

    def predictors_table(self, key: tuple[str, str, str | None]) -> Path | None:
        """The shared predictors table (path without suffix) of these inputs, if any."""
        stem = self.predictors.get(key)
        return None if stem is None else self.directory / stem

    def draws_table(self, n_rows: int, n_bootstraps: int, seed: int) -> Path:
        """Where the draws of a stage-1 recipe are kept (path without suffix)."""
        return self.directory / f"bootstrap_indices_{n_rows}rows_{n_bootstraps}_seed{seed}"


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
    offload : Renderer, optional
        Writes the tables and the checkpoints somewhere else that sees this
        directory (the Dask workers); by default this process writes them.
    """

    def __init__(
        self,
        output_dir: Path,
        perturbed_tf: str,
        output_suffix: str = "",
        timestamp: str = "",
        writing: Writing | None = None,
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
        self._start(writing)

    @classmethod
    def reopen(cls, partial_path: Path, writing: Writing | None = None) -> RunDirectory:
        """The ``.partial`` directory of an interrupted run, to finish it."""
        partial_path = Path(partial_path)
        run_dir = cls.__new__(cls)
        final = partial_path.with_name(partial_path.name.removesuffix(PARTIAL_SUFFIX))
        run_dir.final_path = final
        run_dir.path = partial_path
        run_dir.timestamp = _timestamp_of(final.name)
        run_dir._start(writing)
        return run_dir

    def _start(self, writing: Writing | None) -> None:
        self.finished = False
        self._writing = writing or Writing()
        self._pending_plots: list[tuple[Path, PlotHandle]] = []
        self._pending_files: list[PlotHandle] = []

    @property
    def log_path(self) -> Path:
        return self.path / f"tfbpmodeling_{self.timestamp}.log"

    def finish(self) -> Path:
        """Drop the checkpoints, move the complete directory into place; return its path."""
        self.wait_for_files()
        self.write_plots()
        shutil.rmtree(self.path / CHECKPOINT_DIR, ignore_errors=True)
        for stray in self.path.rglob(".*.tmp"):  # a write cut short elsewhere (a lost worker)
            stray.unlink(missing_ok=True)
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
        self._files([], [(path, plot, args)])

    def _files(self, tables: list[tuple[Any, Path]], figures: list[_Figure]) -> None:
        """Write tables and figures: here (figures drawn by ``render``), or by ``offload`` tasks.

        Offloaded, each figure is a task that draws and writes it (the PNG
        never travels; submitted first, the figures of a stage are on disk
        while the next stage runs), and a stage's tables are one more task.
        With ``one_task_per_stage`` (a batch, whose TFs keep the workers busy
        anyway) the tables and figures of a stage are one task: fewer
        messages for the client per TF.
        """
        if not self._writing.figures:
            figures = []
        if self._writing.offload is None:
            write_tables(tables)
            for path, plot, args in figures:
                self._pending_plots.append((path, self._writing.render(plot, *args)))
            return
        if self._writing.one_task_per_stage:
            self._pending_files.append(self._writing.offload(write_files, tables, figures))
            return
        draw = self._writing.draw or self._writing.offload
        for figure in figures:
            self._pending_files.append(draw(write_files, [], [figure]))
        if tables:
            self._pending_files.append(self._writing.offload(write_files, tables, []))

    def wait_for_files(self, wait: bool = True) -> None:
        """Wait until the files handed over so far are written (or drop those written)."""
        pending = []
        for handle in self._pending_files:
            if wait or handle.done():
                handle.result()
            else:
                pending.append(handle)
        self._pending_files = pending

    def chunk_store(self, label: str) -> Callable[[BootstrapFits], None] | None:
        """A picklable checkpoint writer for where chunks are fitted, when that place sees here."""
        if self._writing.offload is None:
            return None
        return functools.partial(write_checkpoint, self.path / CHECKPOINT_DIR / label)

    def write_inputs(self, result: WorkflowResult) -> None:
        """``input_data/``: processed frames (bootstrap draws come with stage 1)."""
        directory = self.path / "input_data"
        directory.mkdir(exist_ok=True)
        data = result.data
        writing = self._writing
        twins = writing.input_twins
        response = (_Indexed(data.response, twins), directory / "processed_response")
        predictors_path = directory / "processed_predictors"
        shared = None
        if writing.store is not None and data.rows is not None:
            config = result.config
            shared = writing.store.predictors_table(
                BatchStore.inputs_key(
                    config.response_file, config.predictors_file, config.blacklist_file
                )
            )
        if shared is not None:
            self._files([response, (_Linked(None, shared, twins), predictors_path)], [])
            return
        if data.rows is not None and writing.offload is not None and writing.share is not None:
            # The cluster holds the batch's predictors: a worker writes this TF's rows.
            self._pending_files.append(
                writing.offload(
                    write_shared_rows,
                    writing.share(data.rows.checked),
                    data.rows.keep,
                    data.predictors.index,
                    [str(column) for column in data.predictors.columns],
                    predictors_path,
                    [response],
                    twins,
                )
            )
            return
        self._files([response, (_Indexed(data.predictors, twins), predictors_path)], [])

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
        tables, figures = self._bootstrap_stage_files(stage_result)
        if stage == "all_data":
            # Draws in the smallest unsigned type (resampling.bootstrap_draws).
            indices = _Draws(
                stage_result.fits.bootstrap, stage_result.draws, self._writing.input_twins
            )
            store = self._writing.store
            if store is not None:
                n_bootstraps, n_rows = indices.shape
                shared = store.draws_table(n_rows, n_bootstraps, stage_result.seed)
                indices = _Linked(indices, shared, self._writing.input_twins)
            tables.append((indices, self.path / "input_data" / "bootstrap_indices"))
        self._files(tables, figures)
        name = "all_data_significant" if stage == "all_data" else "topn_significant"
        significant = stage_result.confidence[stage_result.confidence["significant"]]
        write_json(
            {row.term: [row.lower, row.upper] for row in significant.itertuples()},
            self.path / f"{name}_{ci_tag(stage_result.ci_level)}.json",
        )

    def _bootstrap_stage_files(
        self, stage: StageResult
    ) -> tuple[list[tuple[Any, Path]], list[_Figure]]:
        directory = self.path / STAGE_DIRS[stage.name]
        plot_dir = directory / "diagnostic_plots"
        (plot_dir if self._writing.figures else directory).mkdir(parents=True, exist_ok=True)
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
            (_Matrix(fits.bootstrap, fits.coef, names), directory / "bootstrap_coefficients"),
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
            f"{STAGE_TITLES[stage.name]}: {len(stage.rows)} features, "
            f"{len(fits.bootstrap)} bootstraps"
        )
        figures = [
            (plot_dir / "coefficient_cis.png", plots.coefficient_forest, (stage.importance, title)),
            (plot_dir / "alpha_distribution.png", plots.alpha_distribution, (fits.alpha, title)),
            (
                plot_dir / "selection_frequency.png",
                plots.selection_frequency,
                (stage.importance, title),
            ),
        ]
        return tables, figures

    def _write_interactors(self, interactors: InteractorResult) -> None:
        directory = self.path / "interactor_significance"
        plot_dir = directory / "interaction_plots"
        (plot_dir if self._writing.figures else directory).mkdir(parents=True, exist_ok=True)
        write_json(
            interactors.significance.to_dict(orient="records"),
            self.path / "interactor_vs_main_result.json",
        )
        title = f"interactor vs main effect ({interactors.method}, {interactors.n_rows} features)"
        delta_r2 = (
            plot_dir / "delta_r2.png",
            plots.interactor_deltas,
            (interactors.significance, title),
        )
        self._files(
            [
                (interactors.significance, directory / "significance_results"),
                (interactors.comparison, directory / "comparison_statistics"),
                (interactors.final_selection, directory / "final_selection"),
            ],
            [delta_r2],
        )

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(summary, self.path / "input_data" / "data_summary.json")

    # Checkpoints ---------------------------------------------------------------

    def save_manifest(self, manifest: dict[str, Any]) -> None:
        """What a resumed run must match (inputs' sha256, options, seed)."""
        write_json(manifest, self.path / MANIFEST)

    def save_chunk(self, label: str, fits: BootstrapFits) -> None:
        """Persist one chunk of fitted bootstraps, unless ``chunk_store`` does it elsewhere."""
        if self._writing.offload is None:
            write_checkpoint(self.path / CHECKPOINT_DIR / label, fits)

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


def unreadable_checkpoints(partial_path: Path) -> list[str]:
    """Checkpoint files of an interrupted run that lack a column this version writes.

    Checkpoints of an older tfbp_dask (before ``max_iter_reached``) cannot be continued.
    """
    directory = Path(partial_path) / CHECKPOINT_DIR
    old = []
    for path in sorted(directory.glob("*/b*.parquet")) if directory.is_dir() else []:
        if not set(_FIT_COLUMNS) <= set(pq.read_schema(path).names):
            old.append(f"{path.parent.name}/{path.name}")
    return old


def write_checkpoint(directory: Path, fits: BootstrapFits) -> None:
    """One chunk of fitted bootstraps as Parquet in ``directory`` (written atomically)."""
    directory.mkdir(parents=True, exist_ok=True)
    columns = {name: getattr(fits, name) for name in _FIT_COLUMNS}
    columns.update({f"coef_{j}": fits.coef[:, j] for j in range(fits.coef.shape[1])})
    target = directory / f"b{fits.bootstrap[0]:06d}-{fits.bootstrap[-1]:06d}.parquet"
    with _atomic(target) as temporary:
        pq.write_table(pa.table(columns), temporary)


_Figure = tuple[Path, Callable[..., bytes], tuple]
"""``(path, plot, args)``: the PNG ``plot(*args)`` belongs at ``path``."""


def write_files(tables: list[tuple[Any, Path]], figures: list[_Figure]) -> None:
    """Write the tables, then draw and write the figures (runs on a worker)."""
    write_tables(tables)
    for path, plot, args in figures:
        png = plot(*args)
        with _atomic(path) as temporary:
            temporary.write_bytes(png)


def write_shared_rows(
    values: np.ndarray,
    keep: np.ndarray | None,
    index: pd.Index,
    columns: list[str],
    path: Path,
    tables: list[tuple[Any, Path]],
    twin: bool = True,
) -> None:
    """Write rows ``keep`` of a batch's predictor values as a TF's processed predictors,
    then ``tables`` (runs on a worker; ``Executor.shared`` holds ``values``)."""
    rows = values if keep is None else values[keep]
    frame = pd.DataFrame(rows, index=index, columns=pd.Index(columns))
    write_tables([(_Indexed(frame, twin), path), *tables])


def write_tables(tables: list[tuple[Any, Path]]) -> None:
    """Write each ``(table, path without suffix)`` with ``write_table`` (runs on a worker).

    A table is a DataFrame, a dict of columns, or a ``_Matrix``/``_Indexed``/``_Draws``
    that makes its columns here, where it is written (its ``write``): a wide table
    travels as one array, never as thousands of columns.
    """
    for table, path in tables:
        if isinstance(table, _Matrix | _Indexed | _Draws | _Linked):
            table.write(path)
        else:
            write_table(table, path)


@dataclass(frozen=True)
class _Matrix:
    """``bootstrap`` then one column per column of ``values`` (``names``, or ``draw_{i}``)."""

    bootstrap: np.ndarray
    values: Any  # an array, or anything np.asarray makes one of (a stage's draws)
    names: list[str] | None

    def columns(self) -> dict[str, np.ndarray]:
        values = np.asarray(self.values)  # draws may come as their recipe (SeededDraws)
        names = self.names or [f"draw_{i}" for i in range(values.shape[1])]
        if "bootstrap" in names:
            raise ValueError("a column named 'bootstrap' would hide the bootstrap ids")
        columns = {"bootstrap": self.bootstrap}
        columns.update({name: values[:, j] for j, name in enumerate(names)})
        return columns

    def write(self, path_without_suffix: Path, twin: bool = True) -> None:
        write_table(self.columns(), path_without_suffix, twin=twin)


@dataclass(frozen=True)
class _Draws:
    """A stage's draws: ``bootstrap_indices``.

    The CSV is the documented wide table (``bootstrap, draw_0 … draw_{n-1}``).
    Its Parquet twin holds the same numbers in the same order as two columns,
    ``bootstrap`` and ``draws`` (each bootstrap's row positions as one list of
    the smallest unsigned type), dictionary-encoded: the positions are then
    bit-packed at ceil(log2 n) bits, 9.8 MB at 1000 bootstraps x 6000 rows
    (their entropy is 9.4 MB) where 6000 columns took 12.4 MB.
    """

    bootstrap: np.ndarray
    values: Any  # the draws, or anything np.asarray makes them of (``SeededDraws``)
    twin: bool = True

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_bootstraps, n_rows)``, without making the draws."""
        return tuple(self.values.shape)

    def write(self, path_without_suffix: Path) -> None:
        draws = np.asarray(self.values)
        _Matrix(self.bootstrap, draws, None).write(path_without_suffix, twin=False)
        if not self.twin:
            return
        n_bootstraps, n_draws = draws.shape
        offsets = np.arange(n_bootstraps + 1, dtype=np.int64) * n_draws
        lists = (pa.LargeListArray if draws.size >= 2**31 else pa.ListArray).from_arrays(
            offsets, pa.array(draws.reshape(-1))
        )
        table = pa.table({"bootstrap": pa.array(self.bootstrap), "draws": lists})
        target = path_without_suffix.with_name(path_without_suffix.name + ".parquet")
        with _atomic(target) as temporary:
            pq.write_table(table, temporary, compression="zstd", use_dictionary=True)


@dataclass(frozen=True)
class _Linked:
    """A table kept once in a ``BatchStore`` and hard-linked into a run directory.

    ``table`` (anything ``write_tables`` writes) is written to ``shared`` first when no
    earlier TF has written it there (None: the batch wrote it before its TFs started).
    """

    table: Any
    shared: Path  # without suffix
    twin: bool = True

    def write(self, path_without_suffix: Path) -> None:
        suffixes = (".csv", ".parquet") if self.twin else (".csv",)
        sources = [self.shared.with_name(self.shared.name + suffix) for suffix in suffixes]
        if self.table is not None and not all(source.exists() for source in sources):
            # Two TFs may both find it missing: each writes it atomically, the same bytes.
            write_tables([(self.table, self.shared)])
        for source, suffix in zip(sources, suffixes):
            link_or_copy(source, path_without_suffix.with_name(path_without_suffix.name + suffix))


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy where links cannot be made), atomically."""
    with _atomic(target) as temporary:
        temporary.unlink(missing_ok=True)
        try:
            os.link(source, temporary)
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(source, temporary)


@dataclass(frozen=True)
class _Indexed:
    """A processed input frame: its feature ids become the first column, ``feature``."""

    frame: pd.DataFrame | pd.Series
    twin: bool = True  # also a Parquet twin

    def columns(self) -> pd.DataFrame:
        return self.frame.rename_axis("feature").reset_index()

    def write(self, path_without_suffix: Path) -> None:
        write_table(self.columns(), path_without_suffix, twin=self.twin)


def _timestamp_of(name: str) -> str:
    """``TF1_suffix_20240115_143022[_2]`` -> ``20240115_143022``."""
    parts = name.split("_")
    for i in range(len(parts) - 1):
        if len(parts[i]) == 8 and parts[i].isdigit() and len(parts[i + 1]) == 6:
            return f"{parts[i]}_{parts[i + 1]}"
    return timestamp_now()


def _partial(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)
