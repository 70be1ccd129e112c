"""Figures and files handed to the workers, and what a batch's TFs share on the cluster.

``Offloading`` is a ``cluster.Cluster`` that runs functions on the workers:
``render`` draws a figure there, ``write`` and ``offload`` run a function that writes a
run's tables, ``draw_figure`` uses the drawing process beside a cluster of threads
(``drawing.py``). Each returns a task whose ``result`` runs the function here when the
cluster cannot deliver it, so a figure or a table never loses a run. ``sees`` tells
whether the workers see a directory as this client does (then they may write into it),
``shared`` keeps a batch's checked predictors on the cluster once. ``execution.Executor``
adds the fits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
import weakref
from collections.abc import Callable
from concurrent.futures import Future as LocalFuture
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask

from .cluster import Cluster, one_line
from .inputs import CheckedPredictors

logger = logging.getLogger(__name__)

TASK_RETRIES = 2
# A stage's draws and design matrix go before queued fits: the stage's own fits wait for them.
DRAWS_PRIORITY = 5


def shared_values(values: Any) -> Any:
    """Worker side: a batch's checked predictor values (or tables), the task's own argument.

    Held by a task rather than scattered, so that a worker lost with the only
    copy costs a recomputation from the task, not the TFs that need it.
    """
    return values


def _reads(path: str, token: str) -> bool:
    """Worker side: True when ``path`` exists here and holds ``token``."""
    try:
        with open(path, encoding="utf-8") as probe:
            return probe.read() == token
    except OSError:
        return False


@dataclass
class Offloading(Cluster):
    """A ``Cluster`` that runs figures and file writes on its workers (see the module)."""

    _seen: dict = field(default_factory=dict, repr=False)
    # Per batch inputs (a CheckedPredictors), the task holding their values (``shared``);
    # an entry goes with its batch.
    _shared: weakref.WeakKeyDictionary = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )
    _sharing: threading.Lock = field(default_factory=threading.Lock, repr=False)

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
                        shared_values,
                        checked.values,
                        key=f"tfbp-predictors-{uuid.uuid4().hex[:12]}",
                        pure=False,
                        retries=TASK_RETRIES,
                        priority=DRAWS_PRIORITY,
                    )
                self._shared[checked] = future
            return future


@dataclass
class ClusterTask:
    """A figure being drawn, or a table written, on the cluster (``Executor.offload``).

    ``result`` gives the function's value (a figure's PNG bytes). If the
    cluster cannot deliver it (the task failed after its retries, was cancelled
    by ``stop``, or the scheduler is gone), the function runs here instead: a
    figure or a table is never the reason a run loses its results.
    """

    executor: Offloading
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
                one_line(error),
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
                one_line(error),
            )
        return self.function(*self.args)
