"""Many TFs on one cluster, one row per TF.

Two ways to hand the TFs to the cluster (``--batch_tasks``):

- *per TF*, when the batch has at least as many TFs as the cluster has worker
  threads (and the workers see the output directory): each TF's whole run is one
  task (``run_tf_task``), which fits, checkpoints and writes on the worker; the
  client only submits TFs and collects their rows, so one client feeds hundreds
  of workers. A task whose worker dies runs again elsewhere and continues from
  the chunks its first attempt checkpointed.
- *per chunk*, otherwise: every TF runs in its own client thread (so a TF's
  top-N stage starts as soon as its own stage 1 is done) and sends its chunks of
  bootstraps to the cluster, so that a few TFs still use every worker.

Either way one TF's failure becomes its ``failed`` entry and spares the others,
an interrupt starts no new TF, and each TF's numbers and files are those of a
single run of that TF. The TFs share the batch's files (``outputs.BatchStore``,
written by ``write_store``). ``write_batch_table`` writes
``batch_{timestamp}.csv`` (and ``.parquet``).
"""

from __future__ import annotations

import ctypes
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import provenance
from .batch_report import Interaction, interaction_rows, read_interaction_rows
from .config import WorkflowConfig
from .errors import InputError
from .inline import InlineExecutor
from .outputs import BatchStore
from .precheck import read_manifest
from .runner import BatchRun, CachedInputs, InputCache, ProgressHook, prepare, run_loaded
from .tables import write_shared_rows, write_table

if TYPE_CHECKING:
    from .execution import Executor

logger = logging.getLogger("tfbp_dask.api")

BatchHook = Callable[[int, int], None]
"""Called as ``hook(tfs_done, tfs_total)`` after each TF of a batch ends."""


@dataclass(frozen=True)
class BatchEntry:
    """How one TF of a batch ended (a row of ``batch_{timestamp}.csv``)."""

    perturbed_tf: str
    status: str
    run_dir: Path | None
    n_significant_all_data: int | None
    n_significant_topn: int | None
    final_selection: tuple[str, ...]
    wall_seconds: float
    error: str
    interactions: tuple[Interaction, ...] = ()


def run_batch(
    configs: Sequence[WorkflowConfig],
    cache: InputCache,
    executor: Executor,
    progress: ProgressHook | None,
    tfs_progress: BatchHook | None,
    limit: int,
    resume_batch: bool,
    batch: BatchRun,
) -> list[BatchEntry]:
    """Run the TFs (per chunk: at most ``limit`` at once); the entries in the order of ``configs``.

    Per chunk, a TF's inputs are prepared (from the tables in ``cache``) only when
    its thread starts, and its arrays are dropped once its run directory is
    written: the client holds the data of at most ``limit`` TFs, and of the
    others only their ``BatchEntry``. Per TF, the workers prepare them.
    """
    entries: list[BatchEntry | None] = [None] * len(configs)
    todo: list[tuple[int, WorkflowConfig, Path | None]] = []
    for index, config in enumerate(configs):
        finished, partials = provenance.earlier_runs(config) if resume_batch else ([], [])
        if finished:
            entries[index] = _earlier_entry(config.perturbed_tf, finished[-1])
            continue
        todo.append((index, config, partials[-1] if partials else None))
    done = len(configs) - len(todo)
    if tfs_progress is not None and done:
        tfs_progress(done, len(configs))

    per_tf = bool(todo) and _runs_per_tf(configs[0].batch_tasks, todo, executor)

    def ended(index: int, entry: BatchEntry) -> None:
        nonlocal done
        entries[index] = entry
        if not per_tf:  # per TF, the client never held the TF's arrays
            _give_back_free_memory()
        done += 1
        logger.info(
            "batch: %d/%d TFs done (%s: %s)", done, len(configs), entry.perturbed_tf, entry.status
        )
        if tfs_progress is not None:
            tfs_progress(done, len(configs))

    if per_tf:
        _run_per_tf(todo, cache, executor, batch, ended)
    else:
        _run_per_chunk(todo, cache, executor, progress, limit, batch, ended)
    return [entry for entry in entries if entry is not None]


def _runs_per_tf(
    mode: str, todo: list[tuple[int, WorkflowConfig, Path | None]], executor: Executor
) -> bool:
    """Whether the TFs go to the cluster as one task each (``--batch_tasks``)."""
    if mode == "per_chunk":
        return False
    unseen = sorted({str(c.output_dir) for _, c, _ in todo if not executor.sees(c.output_dir)})
    if unseen:
        if mode == "per_tf":
            logger.warning(
                "--batch_tasks per_tf: the workers do not see %s, so this client runs the "
                "TFs and sends their chunks of bootstraps",
                ", ".join(unseen),
            )
        return False
    if mode == "per_tf":
        return True
    threads = executor.n_threads
    per_tf = len(todo) >= threads
    logger.info(
        "batch: %d TFs to run on %d worker threads: %s",
        len(todo),
        threads,
        "one task per TF" if per_tf else "chunks of bootstraps",
    )
    return per_tf


def _run_per_chunk(
    todo: list[tuple[int, WorkflowConfig, Path | None]],
    cache: InputCache,
    executor: Executor,
    progress: ProgressHook | None,
    limit: int,
    batch: BatchRun,
    ended: Callable[[int, BatchEntry], None],
) -> None:
    """Each TF in a client thread of its own, its chunks of bootstraps sent to the cluster."""
    pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="tfbp-tf")
    try:
        futures = {
            pool.submit(_timed_run, config, cache, executor, progress, resume_from, batch): index
            for index, config, resume_from in todo
        }
        for future in as_completed(futures):
            ended(futures[future], future.result())
    except BaseException:
        # Interrupted: TFs not started stay unstarted, running ones stop at
        # their next chunk and keep their .partial directories.
        executor.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_per_tf(
    todo: list[tuple[int, WorkflowConfig, Path | None]],
    cache: InputCache,
    executor: Executor,
    batch: BatchRun,
    ended: Callable[[int, BatchEntry], None],
) -> None:
    """Each TF's whole run as one task (``run_tf_task``); the client collects the rows."""
    cluster = {**executor.describe(), "batch_tasks": "per_tf"}
    started = time.perf_counter()
    calls = [
        (config, resume_from, BatchRun(batch.seed, batch.store, uuid.uuid4().hex), cluster)
        for _, config, resume_from in todo
    ]
    names = [config.perturbed_tf for _, config, _ in todo]
    try:
        for position, entry, error in executor.run_tasks(
            run_tf_task, cache.contents(), calls, names
        ):
            index, config, _ = todo[position]
            if error is not None:
                logger.error("%s failed: %s: %s", config.perturbed_tf, type(error).__name__, error)
                entry = _failed_entry(config.perturbed_tf, error, time.perf_counter() - started)
            ended(index, entry)
    except BaseException:
        executor.stop()  # TFs not started stay unstarted; running ones keep their checkpoints
        raise


def run_tf_task(
    inputs: CachedInputs,
    config: WorkflowConfig,
    resume_from: Path | None,
    batch: BatchRun,
    cluster: dict,
) -> BatchEntry:
    """Worker side: one TF's whole run, from the batch's inputs to its run directory.

    A second attempt of the task (its first worker died) continues the
    ``.partial`` directory the first attempt made, from its checkpoints.
    """
    if resume_from is None and batch.task is not None:
        resume_from = _started_by(config, batch.task)
    executor = InlineExecutor(cluster, config.chunk_size)
    return _timed_run(config, InputCache.holding(inputs), executor, None, resume_from, batch)


def _started_by(config: WorkflowConfig, task: str) -> Path | None:
    """The ``.partial`` directory an earlier attempt of task ``task`` made, if any."""
    for partial in reversed(provenance.earlier_runs(config)[1]):
        recorded = read_manifest(partial)
        if recorded is not None and recorded.get("task") == task:
            return partial
    return None


def write_store(
    configs: Sequence[WorkflowConfig],
    cache: InputCache,
    executor: Executor,
    timestamp: str,
) -> BatchStore:
    """``{output_dir}/batch_{timestamp}_input_data/``: each input set's predictors table, once.

    Written (by a worker, when the workers see the directory) before any TF starts:
    the TFs' ``processed_predictors`` are hard links to it.
    """
    first = configs[0]
    directory = Path(first.output_dir) / f"batch_{timestamp}_input_data"
    directory.mkdir(parents=True, exist_ok=True)
    stems: dict[tuple[str, str, str | None], str] = {}
    pending = []
    seen = executor.sees(first.output_dir)
    for config in configs:
        key = BatchStore.inputs_key(
            config.response_file, config.predictors_file, config.blacklist_file
        )
        if key in stems or Path(config.output_dir).resolve() != Path(first.output_dir).resolve():
            continue
        checked = cache.checked(config)
        if checked is None:
            continue
        stem = "processed_predictors" + (f"_{len(stems) + 1}" if stems else "")
        stems[key] = stem
        arguments = (None, checked.ids, list(checked.columns), directory / stem, [])
        twins = not config.no_input_parquet
        if seen:
            values = executor.shared(checked)
            pending.append(executor.write(write_shared_rows, values, *arguments, twins))
        else:
            write_shared_rows(checked.values, *arguments, twins)
    for task in pending:
        task.result()
    return BatchStore(directory, stems)


def _give_back_free_memory() -> None:
    """Return the heap's free pages to the system (glibc's ``malloc_trim``; elsewhere nothing).

    A finished TF's arrays are freed, but glibc keeps freed blocks in the arena of the thread
    that used them: without this the client's peak RSS grew with the TFs done, not with the
    TFs in flight (382 MB after 50 TFs, 517 MB after 150, 6000 x 150 at 200 bootstraps).
    """
    if sys.platform != "linux":
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # another C library: nothing to do
        pass


def _timed_run(
    config: WorkflowConfig,
    cache: InputCache,
    executor: Executor | InlineExecutor,
    progress: ProgressHook | None,
    resume_from: Path | None,
    batch: BatchRun,
) -> BatchEntry:
    """One TF of the batch, in its own thread: its summary row, never its arrays."""
    started = time.perf_counter()
    if executor.stopping:
        return _failed_entry(config.perturbed_tf, RuntimeError("batch interrupted"), 0.0)
    try:
        data = prepare(config, cache)
    except InputError as error:  # this TF only (e.g. absent from the response file)
        return _failed_entry(config.perturbed_tf, error, time.perf_counter() - started)
    try:
        outcome = run_loaded(config, data, executor, progress, resume_from, batch)
    except Exception as error:
        logger.error("%s failed: %s: %s", config.perturbed_tf, type(error).__name__, error)
        return _failed_entry(config.perturbed_tf, error, time.perf_counter() - started)
    except BaseException:  # an interrupt inside this TF stops the whole batch
        executor.stop()
        raise
    result = outcome.result
    return BatchEntry(
        perturbed_tf=config.perturbed_tf,
        status="completed" if result.outcome == "completed" else "stopped",
        run_dir=outcome.run_dir,
        n_significant_all_data=(
            len(result.all_data.significant_terms) if result.all_data is not None else None
        ),
        n_significant_topn=len(result.topn.significant_terms) if result.topn is not None else None,
        final_selection=(
            tuple(result.interactors.final_selection["term"])
            if result.interactors is not None
            else ()
        ),
        wall_seconds=time.perf_counter() - started,
        error="" if result.outcome == "completed" else result.outcome,
        interactions=interaction_rows(result),
    )


def _earlier_entry(tf: str, run_dir: Path) -> BatchEntry:
    """The entry of a TF whose run finished in an earlier, interrupted batch."""
    summary = json.loads((run_dir / "input_data" / "data_summary.json").read_text())
    stages = summary.get("stages", {})

    def significant(stage: str) -> int | None:
        return len(stages[stage]["significant_terms"]) if stage in stages else None

    return BatchEntry(
        perturbed_tf=tf,
        status="done earlier",
        run_dir=run_dir,
        n_significant_all_data=significant("all_data"),
        n_significant_topn=significant("topn"),
        final_selection=tuple(stages.get("interactors", {}).get("final_selection", ())),
        wall_seconds=0.0,
        error="",
        interactions=read_interaction_rows(run_dir),
    )


def _failed_entry(tf: str, error: BaseException, wall: float) -> BatchEntry:
    message = " ".join(str(error).split())
    if not isinstance(error, InputError):
        message = f"{type(error).__name__}: {message}"
    return BatchEntry(tf, "failed", None, None, None, (), wall, message)


def write_batch_table(output_dir: Path, timestamp: str, entries: Sequence[BatchEntry]) -> Path:
    """``{output_dir}/batch_{timestamp}.csv`` (and ``.parquet``): one row per TF."""
    import pandas as pd

    Path(output_dir).mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(
        {
            "perturbed_tf": [e.perturbed_tf for e in entries],
            "status": [e.status for e in entries],
            "run_dir": [str(e.run_dir) if e.run_dir else "" for e in entries],
            "n_significant_all_data": pd.array(
                [e.n_significant_all_data for e in entries], dtype="Int64"
            ),
            "n_significant_topn": pd.array([e.n_significant_topn for e in entries], dtype="Int64"),
            "final_selection": [";".join(e.final_selection) for e in entries],
            "wall_seconds": [round(e.wall_seconds, 3) for e in entries],
            "error": [e.error for e in entries],
        }
    )
    path = Path(output_dir) / f"batch_{timestamp}"
    write_table(table, path)
    logger.info("batch summary: %s.csv", path)
    return path.with_suffix(".csv")
