"""The run directory: its name, its ``.partial`` life, who writes its files and when.

A run writes into ``{run_dir}.partial/`` and renames it to ``{run_dir}`` only
when everything is written, so a finished directory is always complete. Which
files a stage has is ``stage_files.py``'s; how each is encoded (CSV plus a typed
Parquet twin, written to a temporary name and moved into place) is ``tables.py``'s,
and the checkpoints' format ``checkpoints.py``'s. Figures are handed to a *renderer*
(``render_here`` draws them at once; a run passes one that draws them on the
Dask workers) and written when they are ready, at the latest before the rename.
Given an *offload* (the run passes one when the Dask workers see the output
directory), tables, figures and checkpoints are written by the workers
instead (``write_files``, ``write_checkpoint``), the same bytes.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from . import compat
from .checkpoints import CHECKPOINT_DIR, read_checkpoints, write_checkpoint
from .engines import BootstrapFits
from .interactors import InteractorResult
from .precheck import MANIFEST
from .stage_files import bootstrap_stage_files, interactor_files
from .tables import (
    Draws,
    Figure,
    Indexed,
    Linked,
    write_bytes,
    write_files,
    write_json,
    write_shared_rows,
    write_tables,
)
from .workflow import WorkflowResult

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"


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

    def _files(self, tables: list[tuple[Any, Path]], figures: list[Figure]) -> None:
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
        response = (Indexed(data.response, twins), directory / "processed_response")
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
            self._files([response, (Linked(None, shared, twins), predictors_path)], [])
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
        self._files([response, (Indexed(data.predictors, twins), predictors_path)], [])

    def write_stage(self, result: WorkflowResult, stage: str) -> None:
        """Files of one finished stage (``all_data``, ``topn`` or ``interactors``).

        Its figures are written once drawn (``write_plots``), at the latest by ``finish``.
        """
        published = compat.stage_files(result, stage)  # {} unless --compat tfbpmodeling
        if stage == "interactors":
            assert result.interactors is not None
            self._write_interactors(result.interactors, published)
            return
        stage_result = result.all_data if stage == "all_data" else result.topn
        assert stage_result is not None
        tables, figures = bootstrap_stage_files(self.path, stage_result, self._writing.figures)
        if stage == "all_data":
            # Draws in the smallest unsigned type (resampling.bootstrap_draws).
            indices = Draws(
                stage_result.fits.bootstrap, stage_result.draws, self._writing.input_twins
            )
            store = self._writing.store
            if store is not None:
                n_bootstraps, n_rows = indices.shape
                shared = store.draws_table(n_rows, n_bootstraps, stage_result.seed)
                indices = Linked(indices, shared, self._writing.input_twins)
            tables.append((indices, self.path / "input_data" / "bootstrap_indices"))
        self._files(tables, figures)
        name = "all_data_significant" if stage == "all_data" else "topn_significant"
        significant = stage_result.confidence[stage_result.confidence["significant"]]
        target = f"{name}_{ci_tag(stage_result.ci_level)}.json"
        if target not in published:
            write_json(
                {row.term: [row.lower, row.upper] for row in significant.itertuples()},
                self.path / target,
            )
        self._write_texts(published)

    def _write_interactors(self, interactors: InteractorResult, published: dict) -> None:
        tables, figures = interactor_files(self.path, interactors, self._writing.figures)
        target = "interactor_vs_main_result.json"
        if target not in published:
            write_json(interactors.significance.to_dict(orient="records"), self.path / target)
        self._write_texts(published)
        self._files(tables, figures)

    def _write_texts(self, texts: dict[str, str | None]) -> None:
        """Text files by path in the run directory, atomically; ``None``: not written."""
        for relative, text in texts.items():
            if text is not None:
                path = self.path / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                write_bytes(text.encode(), path)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(summary, self.path / "input_data" / "data_summary.json")

    # Checkpoints (their files: checkpoints.py) ------------------------------------

    def save_manifest(self, manifest: dict[str, Any]) -> None:
        """What a resumed run must match (inputs' sha256, options, seed)."""
        write_json(manifest, self.path / MANIFEST)

    def save_chunk(self, label: str, fits: BootstrapFits) -> None:
        """Persist one chunk of fitted bootstraps, unless ``chunk_store`` does it elsewhere."""
        if self._writing.offload is None:
            write_checkpoint(self.path / CHECKPOINT_DIR / label, fits)

    def load_chunks(self, label: str) -> BootstrapFits | None:
        """Every checkpointed bootstrap of ``label``, or None."""
        return read_checkpoints(self.path / CHECKPOINT_DIR / label)


def _timestamp_of(name: str) -> str:
    """``TF1_suffix_20240115_143022[_2]`` -> ``20240115_143022``."""
    parts = name.split("_")
    for i in range(len(parts) - 1):
        if len(parts[i]) == 8 and parts[i].isdigit() and len(parts[i + 1]) == 6:
            return f"{parts[i]}_{parts[i + 1]}"
    return timestamp_now()


def _partial(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)
