"""A cluster joined or started in a background thread, while the caller reads its inputs.

Dask-free on purpose: the caller creates a ``PendingExecutor`` with a function that
imports Dask (``execution``) and connects, so that the import itself, a third of a
second, runs in the background too, and a bad input is reported before it is done.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .execution import Executor

logger = logging.getLogger(__name__)


class PendingExecutor:
    """An ``Executor`` being connected (a local cluster started) in a background thread.

    The cluster's workers start, and load the engine (``Executor.warm``),
    while the caller reads and checks its inputs. ``result()`` waits for the
    executor and raises what connecting raised (``ClusterUnavailable``).
    ``close()`` -- also on leaving a ``with`` block -- closes it; if it is
    still starting, the thread closes it as soon as it is up, so that an error
    found meanwhile (bad input) is reported at once and leaves nothing running.
    """

    def __init__(self, connect: Callable[[], Executor], warm: str | None = None) -> None:
        self._lock = threading.Lock()
        self._executor: Executor | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(
            target=self._connect, args=(connect, warm), name="tfbp-cluster-start"
        )
        self._thread.start()

    def _connect(self, connect: Callable[[], Executor], warm: str | None) -> None:
        try:
            executor = connect()
        except BaseException as error:  # handed to the caller by result()
            self._error = error
            return
        with self._lock:
            keep = not self._closed
            if keep:
                self._executor = executor
        if not keep:  # closed while starting: nobody will use it
            executor.close()
            return
        if warm is not None:
            try:
                executor.warm(warm)
            except Exception as error:  # the fits load the engine themselves then
                logger.debug("workers not warmed: %s: %s", type(error).__name__, error)

    def result(self) -> Executor:
        """The connected executor (waits for it)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._executor is None:
            raise RuntimeError("the executor was closed before it was used")
        return self._executor

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the background thread is done; True if it is."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Close the executor, now or (if still starting) as soon as it is up."""
        with self._lock:
            self._closed = True
            executor = self._executor
        if executor is not None:
            executor.close()

    def __enter__(self) -> PendingExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
