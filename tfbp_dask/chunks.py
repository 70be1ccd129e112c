"""One chunk of a stage's bootstrap fits, where it runs (no Dask here).

``fit_chunk`` is what a Dask task runs for a chunk of bootstraps, and what a TF run
as one task (``inline.py``) calls for each of its chunks: the same function, so the
same bits wherever a chunk is fitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from .engines import GIL_FREE_ENGINES, BootstrapFits, LassoParams, get_engine
from .resampling import bootstrap_test_folds, draws_to_weights


def fit_chunk(
    engine: str,
    X: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray,
    bootstrap: np.ndarray,
    draws: np.ndarray,
    normalize_weights: bool,
    params: LassoParams,
    store: Callable[[BootstrapFits], None] | None = None,
) -> BootstrapFits:
    """Fit one chunk (BLAS pinned to one thread for an engine that uses it).

    The folds of bootstrap b are fixed by b and the classes (SPEC §4), so they
    are rebuilt here rather than shipped; ``draws`` are the stage's draws (compact
    row positions, one row per bootstrap), of which the chunk's rows become
    weights here. ``store`` (when given) checkpoints the chunk from here. The
    result's ``cpu_seconds`` is the engine call's CPU time in this thread.
    """
    # Fresh copies: arrays unpickled from the network sit at arbitrary byte
    # offsets, and BLAS kernels round differently with alignment; a new
    # allocation gives the same layout in every process, so the same bits.
    X = np.array(X, order="K", copy=True)
    y = np.array(y, copy=True)
    weights = draws_to_weights(draws[bootstrap], normalize=normalize_weights)
    with blas_pinned(engine):
        test_folds = bootstrap_test_folds(classes, bootstrap)
        started = time.thread_time()
        fits = get_engine(engine)(X, y, bootstrap, weights, test_folds, params)
        fits = replace(fits, cpu_seconds=time.thread_time() - started)
    if store is not None:
        store(fits)
    return fits


def blas_pinned(engine: str) -> Any:
    """BLAS pinned to one thread for an engine that calls it; nothing for the others.

    Pinning is process-wide: threads of one process that enter and leave it at once
    would restore each other's limits, so engines that need no BLAS skip it.
    """
    return nullcontext() if engine in GIL_FREE_ENGINES else threadpool_limits(limits=1)
