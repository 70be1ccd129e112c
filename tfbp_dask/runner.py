"""One TF from prepared inputs to its finished run directory.

``prepare`` reads (through an ``InputCache`` shared by a batch) and aligns a
TF's inputs; ``run_loaded`` creates or reopens the ``.partial`` directory,
attaches the run log, runs the workflow with a ``Listener`` that writes each
stage's files as soon as the stage is done, writes ``data_summary.json`` and
moves the directory into place. On failure the ``.partial`` directory keeps
what was done (resumable) and the error is raised again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import provenance
from .config import WorkflowConfig
from .engines import BootstrapFits
from .inputs import (
    CheckedPredictors,
    ModelingData,
    check_predictor_rows,
    prepare_modeling_data,
    read_blacklist,
    read_table,
    response_column,
)
from .outputs import BatchStore, RunDirectory, Writing
from .workflow import WorkflowResult, check_folds, choose_seed, run_workflow

if TYPE_CHECKING:
    from .execution import Executor

logger = logging.getLogger("tfbp_dask.api")

ProgressHook = Callable[[str, str, int, int], None]
"""Called as ``hook(perturbed_tf, stage, bootstraps_done, bootstraps_total)``."""


@dataclass(frozen=True)
class BatchRun:
    """How a run of a batch differs from a single run (``run_loaded``'s ``batch``).

    Attributes
    ----------
    seed : int
        The seed of a TF without ``--random_state``: one drawn for the whole batch,
        so that its TFs share their draws (``BatchStore``).
    store : BatchStore, optional
        The batch's shared files.
    task : str, optional
        The token of the Dask task that runs this TF as a whole (recorded in the
        manifest: a retry of the task continues the directory it started).
    """

    seed: int
    store: BatchStore | None = None
    task: str | None = None


@dataclass(frozen=True)
class RunOutcome:
    """A finished run: where its files are and what it computed."""

    run_dir: Path
    result: WorkflowResult

    @property
    def outcome(self) -> str:
        return self.result.outcome


class Listener:
    """Writes each stage's files as soon as the stage is done and forwards progress."""

    def __init__(self, run_dir: RunDirectory, tf: str, hook: ProgressHook | None) -> None:
        self.run_dir = run_dir
        self.tf = tf
        self.hook = hook
        self.latest: WorkflowResult | None = None

    def progress(self, stage: str, done: int, total: int) -> None:
        self.run_dir.write_plots(wait=False)  # figures of finished stages, once drawn
        self.run_dir.wait_for_files(wait=False)  # let go of what is written
        if self.hook is not None:
            self.hook(self.tf, stage, done, total)

    def completed(self, label: str) -> BootstrapFits | None:
        return self.run_dir.load_chunks(label)

    def chunk_done(self, label: str, fits: BootstrapFits) -> None:
        self.run_dir.save_chunk(label, fits)

    def chunk_store(self, label: str) -> Callable[[BootstrapFits], None] | None:
        return self.run_dir.chunk_store(label)

    def stage_done(self, result: WorkflowResult, stage: str) -> None:
        self.latest = result
        self.run_dir.write_stage(result, stage)


@dataclass(frozen=True)
class CachedInputs:
    """An ``InputCache``'s tables, blacklists and checked predictors (picklable)."""

    tables: dict[tuple[Path, str], Any]
    blacklists: dict[Path, list[str]]
    checked: dict[tuple[Path | None, ...], CheckedPredictors | None]


class InputCache:
    """Tables and blacklists read once per path for a whole batch (shared by its threads),
    and the predictors' values checked once per set of inputs (``checked``).

    ``response_columns``: the response columns used (one run's: its pTF's); only they are
    converted when the response file has each of them (``read_table``'s ``columns``).
    """

    def __init__(self, response_columns: Collection[str] | None = None) -> None:
        self._response_columns = response_columns
        self._tables: dict[tuple[Path, str], Any] = {}
        self._blacklists: dict[Path, list[str]] = {}
        self._checked: dict[tuple[Path, Path, Path | None], CheckedPredictors | None] = {}
        self._lock = threading.Lock()
        self._checking = threading.Lock()  # one batch thread checks, the others wait for it

    def contents(self) -> CachedInputs:
        """What was read and checked so far, to send once to the workers of a batch."""
        with self._lock, self._checking:
            return CachedInputs(dict(self._tables), dict(self._blacklists), dict(self._checked))

    @classmethod
    def holding(cls, contents: CachedInputs) -> InputCache:
        """A cache that starts with ``contents`` (a worker's copy of the batch's inputs)."""
        cache = cls()
        cache._tables.update(contents.tables)
        cache._blacklists.update(contents.blacklists)
        cache._checked.update(contents.checked)
        return cache

    def table(self, path: Path, role: str) -> Any:
        key = (Path(path).resolve(), role)
        with self._lock:
            if key not in self._tables:
                columns = self._response_columns if role == "response" else None
                self._tables[key] = read_table(Path(path), role, columns)
            return self._tables[key]

    def checked(self, config: WorkflowConfig) -> CheckedPredictors | None:
        """The predictors' values on the rows any TF of these inputs may model (or None)."""
        key = tuple(
            None if path is None else Path(path).resolve()
            for path in (config.response_file, config.predictors_file, config.blacklist_file)
        )
        with self._checking:
            if key not in self._checked:
                self._checked[key] = check_predictor_rows(
                    self.table(config.response_file, "response"),
                    self.table(config.predictors_file, "predictors"),
                    self.blacklist(config.blacklist_file),
                )
            return self._checked[key]

    def blacklist(self, path: Path | None) -> list[str]:
        if path is None:
            return []
        key = Path(path).resolve()
        with self._lock:
            if key not in self._blacklists:
                self._blacklists[key] = read_blacklist(Path(path))
            return self._blacklists[key]


def prepare(config: WorkflowConfig, cache: InputCache) -> ModelingData:
    """Read (cached) and align the inputs of one TF; check its stages can be cross-validated."""
    response = cache.table(config.response_file, "response")
    # A pTF with no response column is named before a second genome-sized table is read.
    response_column(response, config.perturbed_tf, config.response_file)
    predictors = cache.table(config.predictors_file, "predictors")
    blacklist = cache.blacklist(config.blacklist_file)
    data = prepare_modeling_data(
        response,
        predictors,
        config.perturbed_tf,
        response_path=config.response_file,
        predictors_path=config.predictors_file,
        blacklist=blacklist,
        add_model_variables=config.add_model_variables,
        exclude_interactor_variables=config.exclude_interactor_variables,
        checked=cache.checked(config),
    )
    check_folds(config, data)
    return data


def run_loaded(
    config: WorkflowConfig,
    data: ModelingData,
    executor: Executor,
    progress: ProgressHook | None,
    resume_from: Path | None = None,
    batch: BatchRun | None = None,
) -> RunOutcome:
    """Run one TF whose inputs are prepared; a new run, or ``resume_from`` a ``.partial``.

    ``batch``: other TFs share the cluster, so a stage's files are written by one
    task (``RunDirectory``'s ``one_task_per_stage``), figures only with
    ``--batch_figures``, shared files are linked from the batch's store, and a
    TF without ``--random_state`` takes the batch's seed.
    """
    started = time.perf_counter()
    # Workers that see the output directory write the tables and checkpoints.
    offload = executor.write if executor.sees(config.output_dir) else None
    writing = Writing(
        render=executor.render,
        offload=offload,
        one_task_per_stage=batch is not None,
        share=executor.shared,
        input_twins=not config.no_input_parquet,
        draw=executor.draw_figure,
        figures=batch is None or config.batch_figures,
        store=None if batch is None else batch.store,
    )
    if resume_from is None:
        run_dir = RunDirectory(
            config.output_dir, config.perturbed_tf, config.output_suffix, writing=writing
        )
        if config.random_state is None and batch is not None:
            seed = batch.seed
        else:
            seed = choose_seed(config.random_state)
        recorded = provenance.manifest(config, seed)
        if batch is not None and batch.task is not None:
            recorded["task"] = batch.task
        run_dir.save_manifest(recorded)
    else:
        run_dir = RunDirectory.reopen(resume_from, writing)
        seed = provenance.check_resumable(resume_from, config)
    handler = provenance.attach_log(run_dir.log_path)
    result = WorkflowResult(config=config, data=data, seed=seed, stage1_terms=[])
    listener = Listener(run_dir, data.perturbed_tf, progress)

    def summary() -> dict[str, Any]:
        return provenance.summary(config, result, executor, time.perf_counter() - started)

    try:
        if resume_from is not None:
            logger.info("resuming %s: only bootstraps not checkpointed are fitted", resume_from)
        logger.info("run directory %s (written as %s)", run_dir.final_path, run_dir.path.name)
        logger.info("%s: feature counts %s", data.perturbed_tf, data.feature_counts)
        for message in data.warnings:
            logger.warning(message)
        run_dir.write_inputs(result)
        result = run_workflow(config, data, executor, listener, seed)
        logger.info("%s: %s", data.perturbed_tf, result.outcome)
        run_dir.write_summary(summary())
    except BaseException as error:
        logger.error(
            "run failed (%s: %s); partial results kept in %s (continue it with --resume %s)",
            type(error).__name__,
            error,
            run_dir.path,
            run_dir.path,
        )
        result = listener.latest or result
        result.outcome = f"failed: {type(error).__name__}: {error}"
        try:
            run_dir.write_summary(summary())
            try:
                run_dir.wait_for_files()  # the tables and figures of the stages that finished
                run_dir.write_plots()
            except Exception as write_error:  # never hide the run's own error
                logger.warning("files of the finished stages not written: %s", write_error)
        finally:
            provenance.detach_log(handler)
        raise
    provenance.detach_log(handler)
    return RunOutcome(run_dir.finish(), result)
