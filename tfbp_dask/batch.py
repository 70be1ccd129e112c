"""Many TFs on one cluster: one client thread per TF in flight, one row per TF.

Every TF runs in its own client thread (so a TF's top-N stage starts as soon
as its own stage 1 is done); one TF's failure becomes its ``failed`` entry and
spares the others; an interrupt stops the chunks in flight and starts no new
TF. ``write_batch_table`` writes ``batch_{timestamp}.csv`` (and ``.parquet``).
"""

from __future__ import annotations

import ctypes
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import provenance
from .batch_report import Interaction, interaction_rows, read_interaction_rows
from .config import WorkflowConfig
from .errors import InputError
from .outputs import write_table
from .runner import InputCache, ProgressHook, prepare, run_loaded

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
) -> list[BatchEntry]:
    """Run the TFs, at most ``limit`` at once; the entries in the order of ``configs``.

    A TF's inputs are prepared (from the tables in ``cache``) only when its
    thread starts, and its arrays are dropped once its run directory is
    written: the client holds the data of at most ``limit`` TFs, and of the
    others only their ``BatchEntry``.
    """
    entries: list[BatchEntry | None] = [None] * len(configs)
    done = 0
    pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="tfbp-tf")
    try:
        futures = {}
        for index, config in enumerate(configs):
            finished, partials = provenance.earlier_runs(config) if resume_batch else ([], [])
            if finished:
                entries[index] = _earlier_entry(config.perturbed_tf, finished[-1])
                done += 1
                continue
            resume_from = partials[-1] if partials else None
            futures[pool.submit(_timed_run, config, cache, executor, progress, resume_from)] = index
        if tfs_progress is not None and done:
            tfs_progress(done, len(configs))
        for future in as_completed(futures):
            index = futures[future]
            entries[index] = future.result()
            _give_back_free_memory()
            done += 1
            logger.info(
                "batch: %d/%d TFs done (%s: %s)",
                done,
                len(configs),
                entries[index].perturbed_tf,
                entries[index].status,
            )
            if tfs_progress is not None:
                tfs_progress(done, len(configs))
    except BaseException:
        # Interrupted: TFs not started stay unstarted, running ones stop at
        # their next chunk and keep their .partial directories.
        executor.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [entry for entry in entries if entry is not None]


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
    executor: Executor,
    progress: ProgressHook | None,
    resume_from: Path | None = None,
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
        outcome = run_loaded(config, data, executor, progress, resume_from, in_batch=True)
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
