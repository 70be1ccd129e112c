"""Cluster lifecycle and the distributed bootstrap fits (the only room that imports Dask).

``Executor.connect`` starts an embedded ``LocalCluster`` (one single-threaded
worker process per CPU), joins a running scheduler, or wraps a ``Client`` the
caller already has; it closes only what it created. ``Executor.fit_bootstraps``
scatters a stage's design matrix and response once, submits the bootstraps in
chunks as futures, and gathers the results in bootstrap order.
``Executor.render`` draws a figure on a worker and ``Executor.offload`` runs
any other function there (writing a run's tables), so that a batch's client
mostly waits; ``Executor.sees`` tells whether the workers see a directory as
the client does (then they may write into it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future as LocalFuture
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import dask
import numpy as np
from distributed import Client, Future, LocalCluster, as_completed, fire_and_forget
from distributed.comm.core import CommClosedError
from distributed.security import Security

from ._version import __version__
from .chunks import blas_pinned, fit_chunk
from .design import Term, rows_design_matrix
from .drawing import DrawingProcess
from .engines import BootstrapFits, LassoParams, warm_up
from .errors import ClusterUnavailable
from .inputs import CheckedPredictors, CheckedRows
from .resampling import SeededDraws
from .tls import ClientFiles, refusal, unusable_files

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(bootstraps_done, bootstraps_total)``."""

MIN_CHUNK = 10
MAX_CHUNK = 50
MAX_SHARED_CHUNK = 500
# Stage arrays up to this size, over all of a stage's fit tasks, travel inside the tasks.
EMBEDDED_BYTES = 4_000_000
TASK_RETRIES = 2
DASHBOARD_PORT = 8787
# Task priorities of the warm-up (fits have Dask's default, 0).
WARM_ENGINE_PRIORITY = 10
WARM_FIGURES_PRIORITY = -10
# A stage's draws and design matrix go before queued fits: the stage's own fits wait for them.
DRAWS_PRIORITY = 5
LONE_STAGE_PRIORITY = 1


class StageFailure(RuntimeError):
    """A chunk of bootstrap fits failed after its retries, or the run was stopped."""


class SchedulerLost(StageFailure):
    """The connection to the scheduler was lost in the middle of a stage."""


def _stage_draws(recipe: SeededDraws) -> np.ndarray:
    """Worker side: a stage's draws (one task per stage; kept while the stage is fitted)."""
    return np.asarray(recipe)


def _shared_values(values: Any) -> Any:
    """Worker side: a batch's checked predictor values (or tables), the task's own argument.

    Held by a task rather than scattered, so that a worker lost with the only
    copy costs a recomputation from the task, not the TFs that need it.
    """
    return values


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
                logger.debug("draws not gathered (%s); making them here", _one_line(error))
        if draws is None:
            draws = np.asarray(self.recipe)
        return draws if dtype is None else draws.astype(dtype)

    def __reduce__(self) -> tuple[Any, tuple[int, int, int]]:
        recipe = self.recipe
        return SeededDraws, (recipe.n_samples, recipe.n_bootstraps, recipe.seed)


def _reads(path: str, token: str) -> bool:
    """Worker side: True when ``path`` exists here and holds ``token``."""
    try:
        with open(path, encoding="utf-8") as probe:
            return probe.read() == token
    except OSError:
        return False


def _worker_tfbp_version() -> str:
    """Worker side: the installed tfbp_dask version (or why there is none)."""
    try:
        from tfbp_dask import __version__ as version
    except ImportError:  # pragma: no cover - only on a misconfigured remote worker
        return "not installed"
    return version


def _local_cluster(n_workers: int, processes: bool, port: int, dashboard: bool) -> LocalCluster:
    """The embedded cluster: ``n_workers`` single-threaded workers (processes or threads)."""
    with warnings.catch_warnings():
        # Another run starting at the same moment may take the port found free
        # (``port``); Dask then hosts the dashboard on another port (logged) and says
        # so in a multi-line warning that is no concern of the user's.
        warnings.filterwarnings("ignore", "Port .* is already in use", UserWarning)
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=processes,
            # Worker processes listen on loopback; threads talk in-process (inproc://).
            **({"host": "127.0.0.1"} if processes else {}),
            dashboard_address=f"127.0.0.1:{port}",
            scheduler_kwargs={"dashboard": dashboard},
            # Workers' own warnings (e.g. tasks cancelled while stopping) are
            # Dask's business, not the user's: keep the console for our lines.
            silence_logs=logging.ERROR,
        )


def _warm_engine(engine: str) -> None:
    """Worker side: import the engine and load (or compile) its kernels."""
    with blas_pinned(engine):
        warm_up(engine)


def _warm_figures() -> None:
    """Worker side: import the figure code (matplotlib)."""
    import_module("tfbp_dask.plots").warm_up()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


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


def _free_port(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Executor:
    """A Dask client plus the knowledge of whether we own it.

    Attributes
    ----------
    client : distributed.Client
    owns_client : bool
        True when this executor created the client (and maybe the cluster) and
        must close them.
    cluster : LocalCluster or None
        The embedded cluster, when one was started.
    """

    client: Client
    owns_client: bool
    cluster: LocalCluster | None = None
    _closed: bool = field(default=False, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _in_flight: set = field(default_factory=set, repr=False)
    _seen: dict = field(default_factory=dict, repr=False)
    # Per batch inputs (a CheckedPredictors), the task holding their values (``shared``);
    # an entry goes with its batch.
    _shared: weakref.WeakKeyDictionary = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )
    _sharing: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stages: int = field(default=0, repr=False)
    _dashboard: bool = field(default=False, repr=False)  # an embedded cluster's, when served
    # The figures' process beside an embedded cluster of threads (``draw_figure``).
    _drawing: DrawingProcess | None = field(default=None, repr=False)

    @classmethod
    def connect(
        cls,
        n_workers: int = 4,
        scheduler_address: str | None = None,
        client: Client | None = None,
        processes: bool = True,
        connect_timeout: float = 20.0,
        dashboard: bool = False,
        security: Security | None = None,
        drawing_process: bool = True,
    ) -> Executor:
        """Use ``client``, or join ``scheduler_address``, or start a ``LocalCluster``.

        Parameters
        ----------
        n_workers : int
            Worker processes of an embedded cluster (one thread each).
        scheduler_address : str, optional
            ``tcp://host:port`` or ``tls://host:port`` of a running scheduler.
        client : distributed.Client, optional
            A client the caller owns; it is never closed here.
        processes : bool
            Embedded cluster only: single-threaded worker processes (True), or
            single-threaded workers in this process (False: no start-up of
            processes, nothing pickled; for engines in ``GIL_FREE_ENGINES``).
        dashboard : bool
            Embedded cluster only: serve Dask's dashboard on 127.0.0.1 (port
            8787, or a free one). Off by default: importing and starting it
            costs about half a second of a short run.
        connect_timeout : float
            Seconds to wait for a remote scheduler and its first worker.
        security : distributed.security.Security, optional
            Certificates for joining ``scheduler_address`` (see
            ``client_security``); by default Dask's configuration
            (``distributed.comm.tls.*``).
        drawing_process : bool
            Embedded cluster of threads only: start a process that draws the
            figures (``draw_figure``). A batch, whose workers draw a stage's
            figures in one task with its tables, does without.

        Raises
        ------
        ClusterUnavailable
            Unreachable scheduler, no worker, workers without this version of
            tfbp_dask, or a TLS scheduler that refused this client (or the reverse).
        InputError
            Certificate files that cannot be read or used.
        """
        if client is not None:
            executor = cls(client=client, owns_client=False)
            executor.check_workers(connect_timeout)
            return executor
        if scheduler_address is not None:
            security, files = _checked_security(scheduler_address, security)
            started = time.monotonic()
            try:
                remote = Client(scheduler_address, timeout=f"{connect_timeout}s", security=security)
            except (OSError, TimeoutError, ValueError, RuntimeError) as error:
                left = connect_timeout - (time.monotonic() - started)
                raise ClusterUnavailable(
                    refusal(scheduler_address, connect_timeout, files, error, budget=left)
                ) from None
            executor = cls(client=remote, owns_client=True)
            try:
                executor.check_workers(connect_timeout)
            except ClusterUnavailable:
                executor.close()
                raise
            logger.info(
                "joined the Dask cluster at %s: %d workers; dashboard %s",
                scheduler_address,
                executor.n_workers,
                remote.dashboard_link,
            )
            return executor
        # Dask's HTTP server (health, metrics; the dashboard when asked for) listens on
        # loopback only: the embedded cluster is for this machine's user.
        port = DASHBOARD_PORT if dashboard and _free_port(DASHBOARD_PORT) else 0
        drawing = DrawingProcess() if drawing_process and not processes else None
        try:
            cluster = _local_cluster(n_workers, processes, port, dashboard)
            executor = cls(
                client=Client(cluster),
                owns_client=True,
                cluster=cluster,
                _dashboard=dashboard,
                _drawing=drawing,
            )
        except BaseException:
            if drawing is not None:
                drawing.close()
            raise
        logger.info(
            "started a local Dask cluster: %d %s; %s",
            n_workers,
            "worker processes x 1 thread"
            if processes
            else "worker threads in this process, figures drawn in a process of their own",
            f"dashboard {executor.dashboard_link}"
            if dashboard
            else "no dashboard (--dashboard serves one)",
        )
        return executor

    def warm(self, engine: str) -> None:
        """Have every worker import ``engine`` and load its kernels now, without waiting.

        Per worker, two tasks pinned to it: the engine first (a single-threaded
        worker runs the first fits after it), the figure code at a low priority,
        so that it is imported when the worker has no fit to run (the first
        figures are drawn after stage 1). A worker that joins later loads both
        on first use. Called once per client (per ``connect``), not per TF.
        Beside a drawing process (``draw_figure``), which imports the figure code
        itself, the workers load the engine only.
        """
        workers = list(self.client.scheduler_info(n_workers=-1)["workers"])
        token = uuid.uuid4().hex[:12]
        tasks = [(engine, _warm_engine, (engine,), WARM_ENGINE_PRIORITY)]
        if self._drawing is None:
            tasks.append(("figures", _warm_figures, (), WARM_FIGURES_PRIORITY))
        for index, address in enumerate(workers):
            for name, task, args, priority in tasks:
                future = self.client.submit(
                    task,
                    *args,
                    key=f"tfbp-warm-{name}-{token}-{index}",
                    workers=[address],
                    allow_other_workers=True,
                    pure=False,
                    priority=priority,
                )
                fire_and_forget(future)  # runs to the end even if nobody waits for it

    def check_workers(self, timeout: float) -> None:
        """Wait for a worker, then check the scheduler and every worker run this tfbp_dask.

        The scheduler unpickles every task it is given, so it imports the
        functions of ours they name: with another version (or none) it would
        refuse the tasks one by one, each TF failing on "lost dependencies".
        """
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise ClusterUnavailable(
                f"the Dask scheduler at {self.client.scheduler.address} has no workers "
                f"(waited {timeout:g} s)"
            ) from None
        try:
            found = self.client.run_on_scheduler(_worker_tfbp_version)
        except Exception as error:  # it cannot even unpickle our function: no tfbp_dask there
            found = f"none it can import ({type(error).__name__}: {_one_line(error)})"
        if found != __version__:
            raise ClusterUnavailable(
                f"the Dask scheduler at {self.client.scheduler.address} must run tfbp_dask "
                f"{__version__} like this client: it has {found}"
            )
        versions = self.client.run(_worker_tfbp_version)
        wrong = {worker: found for worker, found in versions.items() if found != __version__}
        if wrong:
            shown = ", ".join(f"{name} has {found}" for name, found in sorted(wrong.items())[:3])
            raise ClusterUnavailable(
                f"Dask workers must run tfbp_dask {__version__} like this client: {shown}"
            )

    def close(self) -> None:
        """Close the client and cluster if this executor created them."""
        if self._closed:
            return
        self._closed = True
        if self._drawing is not None:
            self._drawing.close()
        if self.owns_client:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def n_workers(self) -> int:
        return len(self.client.nthreads())  # one small message, whatever the cluster's size

    def describe(self) -> dict[str, Any]:
        """Address, workers and threads of the cluster (for ``data_summary.json``)."""
        address = getattr(self.client.scheduler, "address", None)
        lost = {"address": address, "embedded": self.cluster is not None, "lost": True}
        if self.client.status != "running":
            return lost
        try:
            threads = self.client.nthreads()
        except (OSError, TimeoutError):  # the scheduler went away (the client may not know yet)
            return lost
        return {
            "address": address,
            "embedded": self.cluster is not None,
            "workers": len(threads),
            "threads": int(sum(threads.values())),
            "dashboard": self.dashboard_link,
        }

    @property
    def dashboard_link(self) -> str | None:
        """Where the cluster's dashboard is served, or None (an embedded cluster without one)."""
        if self.cluster is None:
            return self.client.dashboard_link
        server = getattr(self.cluster.scheduler, "http_server", None)
        if not self._dashboard or server is None:
            return None
        return f"http://127.0.0.1:{server.port}/status"  # where it listens, whatever the host

    @property
    def stopping(self) -> bool:
        """True once ``stop`` was called."""
        return self._stopping.is_set()

    def stop(self) -> None:
        """Cancel every chunk in flight (on an interrupt); running stages then fail."""
        self._stopping.set()
        with self._lock:
            pending = list(self._in_flight)
        if pending:
            self.client.cancel(pending)

    def render(self, plot: Callable[..., bytes], *args: Any) -> ClusterTask:
        """Start drawing ``plot(*args)`` (PNG bytes) on a worker."""
        return self.offload(plot, *args)

    def write(self, function: Callable[..., None], *args: Any) -> ClusterTask:
        """``offload`` a function that writes files: waiting for it fetches no value."""
        return self.offload(function, *args, value=False)

    def draw_figure(self, function: Callable[..., None], *args: Any) -> ClusterTask | DrawingTask:
        """Draw and write a figure (``function(*args)``): in the drawing process if there is
        one (beside an embedded cluster of threads, see ``drawing.py``), else as ``write``."""
        if self._drawing is not None:
            try:
                return DrawingTask(self._drawing.submit(function, *args), function, args)
            except RuntimeError as error:  # the process has ended
                logger.debug("figure drawn by a worker: %s: %s", type(error).__name__, error)
        return self.write(function, *args)

    def offload(self, function: Callable[..., Any], *args: Any, value: bool = True) -> ClusterTask:
        """Start ``function(*args)`` on a worker; run here if the cluster cannot."""
        future = self.client.submit(
            function,
            *args,
            key=f"tfbp-{function.__name__}-{uuid.uuid4().hex[:12]}",
            retries=TASK_RETRIES,
        )
        with self._lock:
            self._in_flight.add(future)
        return ClusterTask(self, future, function, args, value)

    def sees(self, directory: Path) -> bool:
        """True when every worker sees ``directory`` as this client does (probed once).

        A file with a random token is written into ``directory`` and every
        worker is asked to read it: on one machine, or with a shared file
        system (SLURM, the compose file's volume), workers may write a run's
        files themselves; otherwise the client writes them.
        """
        directory = Path(directory).resolve()
        with self._lock:
            if directory in self._seen:
                return self._seen[directory]
        token = uuid.uuid4().hex
        probe = directory / f".tfbp-probe-{token[:12]}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe.write_text(token, encoding="utf-8")
            answers = self.client.run(_reads, str(probe), token)
            seen = bool(answers) and all(answers.values())
        except OSError:
            seen = False
        finally:
            probe.unlink(missing_ok=True)
        logger.info(
            "%s: %s",
            directory,
            "seen by every worker: they write the large tables"
            if seen
            else "not seen by every worker: this client writes every file",
        )
        with self._lock:
            self._seen[directory] = seen
        return seen

    def shared(self, checked: CheckedPredictors) -> Any:
        """A future of ``checked.values`` on the cluster: sent once per batch, not once per TF."""
        with self._sharing:
            future = self._shared.get(checked)
            if future is None or future.status in ("cancelled", "lost", "error"):
                # The values travel inside the task (recomputed if its worker is lost);
                # Dask's warning about a large graph is meant for repeated data.
                with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1TiB"}):
                    future = self.client.submit(
                        _shared_values,
                        checked.values,
                        key=f"tfbp-predictors-{uuid.uuid4().hex[:12]}",
                        pure=False,
                        retries=TASK_RETRIES,
                        priority=DRAWS_PRIORITY,
                    )
                self._shared[checked] = future
            return future

    @property
    def n_threads(self) -> int:
        """Worker threads of the cluster now (what a batch compares its TF count with)."""
        return int(sum(self.client.nthreads().values()))

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
                _shared_values,
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
            for future in as_completed(futures):
                position = futures[future]
                try:
                    value = future.result()
                except Exception:  # a lost worker, after the retries; cancelled
                    if self._stopping.is_set():
                        error = StageFailure("stopped before this TF was done")
                    yield position, None, error
                else:
                    yield position, value, None
                future.release()
        finally:
            with self._lock:
                self._in_flight.difference_update(futures)
            for future in futures:
                future.release()
            held.release()

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
                        f"({type(error).__name__}: {_one_line(error)})"
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
            f"{type(error).__name__}: {_one_line(error)}"
        )


def client_security(
    tls_ca_file: str | None = None, tls_cert: str | None = None, tls_key: str | None = None
) -> Security | None:
    """A client's ``Security`` from certificate files; None when no file is given.

    Files not given are taken from Dask's configuration
    (``distributed.comm.tls.ca-file``, ``.client.cert``, ``.client.key``).
    """
    given = {"tls_ca_file": tls_ca_file, "tls_client_cert": tls_cert, "tls_client_key": tls_key}
    given = {name: str(value) for name, value in given.items() if value is not None}
    return Security(**given) if given else None


def _checked_security(address: str, security: Security | None) -> tuple[Security, ClientFiles]:
    """The security to join ``address`` with, its files checked before connecting."""
    security = security if security is not None else Security()
    values = (security.tls_ca_file, security.tls_client_cert, security.tls_client_key)
    files = ClientFiles(*(None if value is None else str(value) for value in values))
    files.check(address)
    if files.ca_file and files.cert:
        try:  # load them now: a bad file is the user's input, not a cluster failure
            security.get_connection_args("client")
        except (OSError, ValueError) as error:
            raise unusable_files(files, error) from None
    return security, files


@dataclass
class ClusterTask:
    """A figure being drawn, or a table written, on the cluster (``Executor.offload``).

    ``result`` gives the function's value (a figure's PNG bytes). If the
    cluster cannot deliver it (the task failed after its retries, was cancelled
    by ``stop``, or the scheduler is gone), the function runs here instead: a
    figure or a table is never the reason a run loses its results.
    """

    executor: Executor
    future: Any
    plot: Callable[..., Any]
    args: tuple
    value: bool = True  # False: the function writes files; waiting fetches nothing

    def done(self) -> bool:
        """True when ``result`` will not wait for the cluster."""
        executor = self.executor
        return self.future.done() or executor.stopping or executor.client.status != "running"

    def result(self) -> Any:
        executor, name = self.executor, self.plot.__name__
        try:
            while not executor.stopping and executor.client.status == "running":
                try:
                    if self.value:
                        return self.future.result(timeout=1.0)
                    error = self.future.exception(timeout=1.0)  # waits; gathers nothing
                except TimeoutError:
                    continue
                if self.future.status == "finished":
                    return None
                raise error or RuntimeError(f"the task ended {self.future.status}")
            logger.warning("running %s here: the cluster is stopping", name)
        except (Exception, asyncio.CancelledError) as error:
            logger.warning(
                "running %s here: the cluster did not (%s: %s)",
                name,
                type(error).__name__,
                _one_line(error),
            )
        finally:
            with executor._lock:
                executor._in_flight.discard(self.future)
            self.future.release()
        return self.plot(*self.args)


@dataclass
class DrawingTask:
    """A figure being drawn and written by the drawing process (``Executor.draw_figure``).

    As for a ``ClusterTask``: if the process cannot deliver (it died, or the figure
    failed there), the function runs here instead.
    """

    future: LocalFuture
    function: Callable[..., Any]
    args: tuple

    def done(self) -> bool:
        return self.future.done()

    def result(self) -> Any:
        try:
            return self.future.result()
        except Exception as error:
            logger.warning(
                "running %s here: the drawing process did not (%s: %s)",
                self.function.__name__,
                type(error).__name__,
                _one_line(error),
            )
        return self.function(*self.args)


def _chunks(ids: np.ndarray, size: int) -> list[np.ndarray]:
    """Split sorted bootstrap ids into runs of consecutive ids, at most ``size`` long."""
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    chunks = []
    for run in np.split(ids, breaks):
        chunks += [run[start : start + size] for start in range(0, len(run), size)]
    return chunks
