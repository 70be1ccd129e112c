"""The distributed bootstrap fits and a batch's TFs as tasks.

``Executor`` is an ``offload.Offloading`` (figures and files on the workers), itself a
``cluster.Cluster`` (its lifecycle: ``Executor.connect`` starts, joins or wraps one).
``Executor.fit_bootstraps`` scatters a stage's design matrix and response once,
submits the bootstraps in chunks as futures, and gathers the results in bootstrap
order; ``Executor.run_tasks`` runs a function per TF on the workers (a batch per TF).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
from distributed import Future, as_completed
from distributed.comm.core import CommClosedError

from .chunks import fit_chunk
from .cluster import one_line
from .design import Term, rows_design_matrix
from .engines import BootstrapFits, LassoParams
from .inputs import CheckedRows
from .offload import DRAWS_PRIORITY, TASK_RETRIES, Offloading, shared_values
from .resampling import SeededDraws

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(bootstraps_done, bootstraps_total)``."""

MIN_CHUNK = 10
MAX_CHUNK = 50
MAX_SHARED_CHUNK = 500
# Stage arrays up to this size, over all of a stage's fit tasks, travel inside the tasks.
EMBEDDED_BYTES = 4_000_000
LONE_STAGE_PRIORITY = 1
# How often a batch client looks for per-TF tasks that ended (``run_tasks``).
POLL_SECONDS = 0.25


class StageFailure(RuntimeError):
    """A chunk of bootstrap fits failed after its retries, or the run was stopped."""


class SchedulerLost(StageFailure):
    """The connection to the scheduler was lost in the middle of a stage."""


def _stage_draws(recipe: SeededDraws) -> np.ndarray:
    """Worker side: a stage's draws (one task per stage; kept while the stage is fitted)."""
    return np.asarray(recipe)


class ClusterDraws:
    """A stage's draws, made by a task on the cluster (``Executor.draw``): the client holds a
    future, not the draws (6000 rows x 1000 bootstraps: 12 MB and ~60 ms of CPU per stage).

    ``np.asarray`` gathers them, or makes them here if the cluster cannot give them.
    Pickled (a table written by a worker) they travel as their recipe, ``SeededDraws``,
    and are made again where they are written: the same bits.
    """

    def __init__(self, recipe: SeededDraws, future: Any, executor: Executor) -> None:
        self.recipe = recipe
        self.future = future
        self._executor = executor

    @property
    def shape(self) -> tuple[int, int]:
        return self.recipe.shape

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        draws = None
        if self._executor.client.status == "running" and not self._executor.stopping:
            try:
                draws = self.future.result()
            except Exception as error:  # made here below: the same bits
                logger.debug("draws not gathered (%s); making them here", one_line(error))
        if draws is None:
            draws = np.asarray(self.recipe)
        return draws if dtype is None else draws.astype(dtype)

    def __reduce__(self) -> tuple[Any, tuple[int, int, int]]:
        recipe = self.recipe
        return SeededDraws, (recipe.n_samples, recipe.n_bootstraps, recipe.seed)


def default_chunk_size(n_bootstraps: int, n_workers: int, n_stages: int = 1) -> int:
    """About four tasks per worker, each holding 10 to 50 bootstraps.

    ``n_stages`` stages fitted at once (the TFs of a batch) share the workers:
    each then needs fewer, larger tasks (up to 500 bootstraps), so that the
    client's cost per TF (a message per task each way) does not grow with the
    cluster.
    """
    per_task = math.ceil(n_bootstraps * max(1, n_stages) / max(1, 4 * n_workers))
    largest = MAX_CHUNK if n_stages <= 1 else MAX_SHARED_CHUNK
    return int(min(largest, max(MIN_CHUNK, per_task)))


@dataclass
class Executor(Offloading):
    """The submission of work to a ``Cluster``: a stage's arrays scattered once, its
    bootstraps fitted in chunks and gathered in order, a TF's whole run as one task (a
    batch); figures and files go to the workers as ``Offloading`` sends them."""

    _stages: int = field(default=0, repr=False)

    def run_tasks(
        self,
        function: Callable[..., Any],
        shared: Any,
        calls: list[tuple[Any, ...]],
        names: list[str],
    ) -> Iterator[tuple[int, Any, BaseException | None]]:
        """Run ``function(shared, *call)`` as one task per call; yield as each ends.

        ``shared`` (a batch's tables) goes to the cluster once, inside a task of its
        own (recomputed, not lost, with a lost worker). Yields ``(position in calls,
        value, None)``, or ``(position, None, error)`` for a task that failed after
        its retries or was cancelled by ``stop``. A task whose worker dies is run
        again elsewhere (``function`` must be able to continue what it started).
        """
        with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1TiB"}):
            held = self.client.submit(
                shared_values,
                shared,
                key=f"tfbp-inputs-{uuid.uuid4().hex[:12]}",
                pure=False,
                retries=TASK_RETRIES,
                priority=DRAWS_PRIORITY,
            )
        token = uuid.uuid4().hex[:12]
        keys = [f"tfbp-tf-{name}-{token}-{i}" for i, name in enumerate(names)]
        submitted = self.client.map(  # one message to the scheduler for the whole batch
            function,
            [held] * len(calls),
            *(list(column) for column in zip(*calls, strict=True)),
            key=keys,
            pure=False,
            retries=TASK_RETRIES,
        )
        futures = {future: position for position, future in enumerate(submitted)}
        with self._lock:
            self._in_flight.update(futures)
        try:
            yield from self._as_they_end(futures)
        finally:
            with self._lock:
                self._in_flight.difference_update(futures)
            for future in futures:
                future.release()
            held.release()

    def _as_they_end(
        self, futures: dict[Future, int]
    ) -> Iterator[tuple[int, Any, BaseException | None]]:
        """``(position, value, error)`` of each task as it ends, looked for every 0.25 s.

        Looking is reading the futures' states here (the client's event loop keeps
        them), and the values of the tasks found ended come in one ``gather``: a
        batch's TFs cost the client no waiting coroutine, wake-up or round trip of
        their own (``as_completed`` spent about 1 ms of client CPU per task). A TF
        is reported at most 0.25 s after it ended; the workers do not wait for that.
        """
        pending = dict(futures)
        while pending:
            ended = [future for future in pending if future.done()]
            if not ended:
                time.sleep(POLL_SECONDS)
                continue
            finished = [future for future in ended if future.status == "finished"]
            try:
                values = self.client.gather(finished) if finished else []
            except Exception:  # a value lost meanwhile: one at a time, below
                values, finished = [], []
            found = dict(zip(finished, values, strict=True))
            for future in ended:
                position = pending.pop(future)
                if future in found:
                    yield position, found[future], None
                    continue
                if future.status == "finished":  # its value was lost: computed again
                    try:
                        value = future.result()
                    except Exception:  # noqa: BLE001 - told as this task's failure
                        pass
                    else:
                        yield position, value, None
                        continue
                yield position, None, self._task_error(future)  # raised, lost, cancelled

    def _task_error(self, future: Future) -> Exception:
        """Why a task of ``run_tasks`` gave no value: stopped, its error, or cancelled."""
        if self._stopping.is_set():
            return StageFailure("stopped before this TF was done")
        try:
            error = future.exception()
        except BaseException:  # noqa: BLE001 - cancelled: told as a failure of this TF
            error = None
        if isinstance(error, Exception):
            return error
        return StageFailure(f"its task was {future.status} before it ended")

    def design(
        self,
        rows: CheckedRows,
        columns: list[str],
        perturbed_tf: str,
        terms: list[Term],
        scale_by_std: bool,
    ) -> Future:
        """Start making a design matrix on the cluster, from a batch's shared predictors."""
        return self.client.submit(
            rows_design_matrix,
            self.shared(rows.checked),
            rows.keep,
            list(columns),
            perturbed_tf,
            list(terms),
            scale_by_std,
            key=f"tfbp-design-{perturbed_tf}-{uuid.uuid4().hex[:12]}",
            retries=TASK_RETRIES,
            priority=DRAWS_PRIORITY,
        )

    def draw(self, n_samples: int, n_bootstraps: int, seed: int) -> ClusterDraws:
        """Start making a stage's draws on the cluster (``resampling.bootstrap_draws``)."""
        recipe = SeededDraws(n_samples, n_bootstraps, seed)
        future = self.client.submit(
            _stage_draws,
            recipe,
            key=f"tfbp-draws-{seed}-{uuid.uuid4().hex[:12]}",
            retries=TASK_RETRIES,
            priority=DRAWS_PRIORITY,
        )
        return ClusterDraws(recipe, future, self)

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
        progress: ProgressCallback | None = None,
        completed: BootstrapFits | None = None,
        on_chunk: Callable[[BootstrapFits], None] | None = None,
        store: Callable[[BootstrapFits], None] | None = None,
    ) -> BootstrapFits:
        """Fit every bootstrap of a stage on the cluster.

        Parameters
        ----------
        label : str
            Names the stage in task keys and error messages.
        engine : str
            Engine name (``sklearn``, ``gram``).
        X : ndarray of shape (n_samples, n_terms), or Future
            A future (``design``) is already on the cluster; an array travels with the tasks.
        y : ndarray of shape (n_samples,)
        draws : ClusterDraws
            The stage's draws (``draw``): row positions in a compact integer
            type, kept on the cluster; each fit task makes its chunk's weights
            from them (the client never holds the draws or a weight matrix).
        normalize_weights : bool
            Scale each bootstrap's weights to sum to 1.
        classes : ndarray of shape (n_samples,)
            Stratification classes; bootstrap b's folds come from them and b.
        params : LassoParams
        chunk_size : int, optional
            Bootstraps per task; by default about four tasks per worker.
        progress : callable, optional
            Told the number of bootstraps done after every finished chunk.
        completed : BootstrapFits, optional
            Bootstraps already fitted (a resumed run); only the others are fitted.
        on_chunk : callable, optional
            Given every newly fitted chunk as it arrives (to checkpoint it).
        store : callable, optional
            Picklable; called on the worker with the chunk it fitted (to
            checkpoint it there, when the worker sees the run directory).

        Returns
        -------
        BootstrapFits
            Ordered by bootstrap index, whatever the chunking or arrival order.

        Raises
        ------
        StageFailure
            A chunk failed after its retries, or the run was stopped.
        SchedulerLost
            The connection to the scheduler was lost.
        """
        n_bootstraps = draws.shape[0]
        parts = [completed] if completed is not None and len(completed.bootstrap) else []
        already = set() if not parts else set(completed.bootstrap.tolist())
        missing = np.array([b for b in range(n_bootstraps) if b not in already], dtype=np.int64)
        done = n_bootstraps - len(missing)
        if progress is not None and done:
            progress(done, n_bootstraps)
        if len(missing) == 0:
            return BootstrapFits.concatenate(parts)
        with self._stage_in_flight() as stages:  # this stage and those of other TFs
            chunk = chunk_size or default_chunk_size(n_bootstraps, max(1, self.n_workers), stages)
            token = uuid.uuid4().hex[:12]
            chunks = _chunks(missing, chunk)
            n = len(chunks)
            try:
                X_arg, y_arg, classes_arg = self._stage_arrays(X, y, classes, n)
            except (OSError, TimeoutError) as error:  # CommClosedError is an OSError
                if self.client.status != "running" or isinstance(error, CommClosedError):
                    raise SchedulerLost(
                        f"lost the connection to the Dask scheduler before {label} "
                        f"({type(error).__name__}: {one_line(error)})"
                    ) from error
                raise
            submitted = self.client.map(  # one message for the whole stage
                fit_chunk,
                [engine] * n,
                [X_arg] * n,
                [y_arg] * n,
                [classes_arg] * n,
                chunks,
                [draws.future] * n,  # each task takes its chunk's rows
                [normalize_weights] * n,
                [params] * n,
                [store] * n,
                key=[f"tfbp-fit-{label}-{token}-{ids[0]}" for ids in chunks],
                retries=TASK_RETRIES,
                # A lone stage's fits go before the tables and figures of the stage before
                # it (they are next on the critical path); when stages of several TFs are in
                # flight, all go in submission order, so that no TF's files wait for ever.
                priority=LONE_STAGE_PRIORITY if stages == 1 else 0,
            )
            futures = dict(zip(submitted, chunks))
            with self._lock:
                self._in_flight.update(futures)
            try:
                for future in as_completed(futures):
                    ids = futures[future]
                    try:
                        part = future.result()
                    except Exception as error:
                        raise self._failure(label, ids, error) from error
                    parts.append(part)
                    if on_chunk is not None:
                        on_chunk(part)
                    done += len(ids)
                    if progress is not None:
                        progress(done, n_bootstraps)
            finally:
                with self._lock:
                    self._in_flight.difference_update(futures)
                for future in futures:
                    future.release()
                for argument in (X_arg, y_arg, classes_arg):
                    if isinstance(argument, Future):
                        argument.release()
            return BootstrapFits.concatenate(parts)

    def _stage_arrays(
        self, X: np.ndarray | Future, y: np.ndarray, classes: np.ndarray, n_tasks: int
    ) -> tuple[Any, Any, Any]:
        """A stage's X, y and classes as its fit tasks take them.

        A matrix made on the cluster is its future. Arrays that all the tasks
        together carry in a few megabytes travel inside them (no scatter round
        trip, no futures to release); larger ones are scattered once.
        """
        on_cluster = isinstance(X, Future)
        local = [y, classes] if on_cluster else [X, y, classes]
        if sum(array.nbytes for array in local) * n_tasks > EMBEDDED_BYTES:
            local = self.client.scatter(local, broadcast=True, hash=False)
        return (X, *local) if on_cluster else tuple(local)

    @contextmanager
    def _stage_in_flight(self) -> Iterator[int]:
        """Count the stages being fitted at once (a batch's TFs); yields the count."""
        with self._lock:
            self._stages += 1
            stages = self._stages
        try:
            yield stages
        finally:
            with self._lock:
                self._stages -= 1

    def _failure(self, label: str, ids: np.ndarray, error: BaseException) -> Exception:
        """The exception that says why a chunk came back without results."""
        if self._stopping.is_set():
            return StageFailure(f"{label}: stopped before bootstraps {ids[0]}-{ids[-1]} were done")
        if self.client.status != "running" or isinstance(error, CommClosedError):
            return SchedulerLost(
                f"lost the connection to the Dask scheduler during {label} "
                f"(bootstraps {ids[0]}-{ids[-1]} unfinished)"
            )
        return StageFailure(
            f"{label}: bootstraps {ids[0]}-{ids[-1]} failed after {TASK_RETRIES} retries: "
            f"{type(error).__name__}: {one_line(error)}"
        )


def _chunks(ids: np.ndarray, size: int) -> list[np.ndarray]:
    """Split sorted bootstrap ids into runs of consecutive ids, at most ``size`` long."""
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    chunks = []
    for run in np.split(ids, breaks):
        chunks += [run[start : start + size] for start in range(0, len(run), size)]
    return chunks
