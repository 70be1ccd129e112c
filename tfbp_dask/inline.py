"""One TF's whole run in the thread that runs it: the executor of a TF run as one task.

When a batch has at least as many TFs as the cluster has worker threads, each TF's
stages and files are one Dask task (``batch.run_tf_task``, submitted by
``Executor.run_tasks``): the worker that runs it makes the draws and the design
matrices, fits every chunk with ``chunks.fit_chunk`` (what a fit task would run, so
the same bits), checkpoints each chunk and writes the run directory, and the client
only submits TFs and collects their rows. ``InlineExecutor`` is what
``runner.run_loaded`` and ``workflow.run_workflow`` see as the executor there.
No Dask here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .chunks import fit_chunk
from .design import Term, rows_design_matrix
from .engines import BootstrapFits, LassoParams
from .inputs import CheckedRows
from .outputs import render_here
from .resampling import SeededDraws

# Bootstraps per chunk: the most a worker lost in the middle of a TF loses.
INLINE_CHUNK = 100


class InlineStopped(RuntimeError):
    """The batch was stopped while this TF was being fitted."""


class InlineExecutor:
    """Fits, draws, design matrices and figures of one TF, here and now.

    Parameters
    ----------
    cluster : dict
        What ``data_summary.json`` records of the cluster (the client's ``describe()``,
        with how the batch ran its TFs).
    chunk_size : int, optional
        Bootstraps per chunk (each chunk is checkpointed); default ``INLINE_CHUNK``.
    """

    n_workers = 1
    shared = None  # the rows are here: nothing to hold elsewhere
    draw_figure = None
    write = None

    def __init__(self, cluster: dict[str, Any], chunk_size: int | None = None) -> None:
        self._cluster = dict(cluster)
        self._chunk_size = chunk_size or INLINE_CHUNK
        self._stopping = threading.Event()

    # What runner.run_loaded asks of an executor -----------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop at the next chunk (the chunks done stay checkpointed)."""
        self._stopping.set()

    def describe(self) -> dict[str, Any]:
        return dict(self._cluster)

    def sees(self, directory: Path) -> bool:
        """False: nothing is handed elsewhere, this thread writes every file."""
        return False

    @staticmethod
    def render(plot: Callable[..., bytes], *args: Any) -> Any:
        return render_here(plot, *args)

    # What workflow.run_workflow asks of a fitter -----------------------------------------

    def draw(self, n_samples: int, n_bootstraps: int, seed: int) -> np.ndarray:
        return np.asarray(SeededDraws(n_samples, n_bootstraps, seed))

    def design(
        self,
        rows: CheckedRows,
        columns: list[str],
        perturbed_tf: str,
        terms: list[Term],
        scale_by_std: bool,
    ) -> np.ndarray:
        return rows_design_matrix(
            rows.checked.values, rows.keep, columns, perturbed_tf, terms, scale_by_std
        )

    def fit_bootstraps(
        self,
        label: str,
        engine: str,
        X: np.ndarray,
        y: np.ndarray,
        draws: np.ndarray,
        normalize_weights: bool,
        classes: np.ndarray,
        params: LassoParams,
        chunk_size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        completed: BootstrapFits | None = None,
        on_chunk: Callable[[BootstrapFits], None] | None = None,
        store: Callable[[BootstrapFits], None] | None = None,
    ) -> BootstrapFits:
        """Every bootstrap not in ``completed``, chunk by chunk, in bootstrap order.

        Same contract as ``Executor.fit_bootstraps``; ``on_chunk`` (or ``store``)
        checkpoints each chunk as soon as it is fitted.
        """
        n_bootstraps = np.asarray(draws).shape[0]
        parts = [completed] if completed is not None and len(completed.bootstrap) else []
        already = set() if not parts else set(completed.bootstrap.tolist())
        missing = np.array([b for b in range(n_bootstraps) if b not in already], dtype=np.int64)
        done = n_bootstraps - len(missing)
        size = chunk_size or self._chunk_size
        for start in range(0, len(missing), size):
            if self.stopping:
                raise InlineStopped(f"{label}: stopped before bootstrap {missing[start]}")
            ids = missing[start : start + size]
            part = fit_chunk(engine, X, y, classes, ids, draws, normalize_weights, params, store)
            parts.append(part)
            if on_chunk is not None:
                on_chunk(part)
            done += len(ids)
            if progress is not None:
                progress(done, n_bootstraps)
        return BootstrapFits.concatenate(parts)
