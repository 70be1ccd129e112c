"""A Dask cluster's lifecycle: started, joined or wrapped; checked, warmed, closed.

``Cluster.connect`` starts an embedded ``LocalCluster`` (single-threaded workers:
threads of this process for an engine that releases the GIL, processes otherwise),
joins a running scheduler (``tcp://`` or ``tls://``, its certificates checked before
connecting), or wraps a ``Client`` the caller already has; it closes only what it
created. ``check_workers`` refuses a cluster that runs another tfbp_dask, ``warm`` has
every worker load the engine's kernels once. What is sent to the cluster is
``execution.Executor``'s, a ``Cluster`` of its own.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Self

from distributed import Client, LocalCluster
from distributed.security import Security

from ._version import __version__
from .chunks import blas_pinned
from .drawing import DrawingProcess
from .engines import warm_up
from .errors import ClusterUnavailable
from .tls import ClientFiles, refusal, unusable_files

logger = logging.getLogger(__name__)

DASHBOARD_PORT = 8787
# Task priorities of the warm-up (fits have Dask's default, 0).
WARM_ENGINE_PRIORITY = 10
WARM_FIGURES_PRIORITY = -10


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


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _free_port(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Cluster:
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
    _dashboard: bool = field(default=False, repr=False)  # an embedded cluster's, when served
    # The figures' process beside an embedded cluster of threads (``draw_figure``).
    _drawing: DrawingProcess | None = field(default=None, repr=False)
    # The warm-up tasks, held until close (``warm``).
    _warming: list = field(default_factory=list, repr=False)

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
    ) -> Self:
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
        figures are drawn after stage 1). The pins are strict: with loose ones,
        work stealing may hand a busy worker's figure task to an idle worker,
        which then imports twice while the busy one never does. This executor
        holds the tasks until ``close``, so a task whose worker left (it waits
        for that worker) is dropped with the client, not left on the scheduler.
        A worker that joins later loads both on first use. Called once per client
        (per ``connect``), not per TF. Beside a drawing process (``draw_figure``),
        which imports the figure code itself, the workers load the engine only.
        """
        workers = list(self.client.scheduler_info(n_workers=-1)["workers"])
        token = uuid.uuid4().hex[:12]
        tasks = [(engine, _warm_engine, (engine,), WARM_ENGINE_PRIORITY)]
        if self._drawing is None:
            tasks.append(("figures", _warm_figures, (), WARM_FIGURES_PRIORITY))
        for index, address in enumerate(workers):
            for name, task, args, priority in tasks:
                self._warming.append(
                    self.client.submit(
                        task,
                        *args,
                        key=f"tfbp-warm-{name}-{token}-{index}",
                        workers=[address],
                        allow_other_workers=False,
                        pure=False,
                        priority=priority,
                    )
                )

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
            found = f"none it can import ({type(error).__name__}: {one_line(error)})"
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
        warming, self._warming = self._warming, []
        for future in warming:  # run or not, nobody needs them now
            future.release()
        if self._drawing is not None:
            self._drawing.close()
        if self.owns_client:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()

    def __enter__(self) -> Self:
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

    @property
    def n_threads(self) -> int:
        """Worker threads of the cluster now (what a batch compares its TF count with)."""
        return int(sum(self.client.nthreads().values()))


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
