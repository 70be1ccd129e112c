"""A process of its own that draws and writes a single run's figures.

Beside an embedded cluster of threads, figures drawn by the worker threads hold the
client's GIL (matplotlib's import and the seven figures: 0.7 s of a 3.1 s run at 300
bootstraps), in turn with the fits' Python and the table writes. A ``DrawingProcess``
draws them on another CPU instead: started with the cluster, it imports matplotlib
while the run reads its inputs and loads the kernels.

It is a plain child interpreter (``python -c`` running ``serve``) fed pickled calls on
its standard input, answering on its standard output. Unlike a multiprocessing pool it
never re-runs the caller's main script (a driver script need not guard its body with
``if __name__ == "__main__"``), and it ends as soon as its input is closed. It ignores
Ctrl-C, which the run handles. A call whose process died fails with ``RuntimeError``;
the caller then draws the figure itself (``offload.DrawingTask``).
"""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

# The directory holding this package, first on the child's path: it imports this code.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


class DrawingProcess:
    """A child process that runs picklable calls one at a time (``submit``)."""

    def __init__(self) -> None:
        self._futures: dict[int, Future] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._closed = False
        command = [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); "
            "from tfbp_dask.drawing import serve; serve()",
        ]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, name="tfbp-drawing", daemon=True)
        self._reader.start()

    def submit(self, function: Callable[..., Any], *args: Any) -> Future:
        """Run ``function(*args)`` in the process; its result or exception in the future."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the drawing process has ended")
            call_id = next(self._ids)
            self._futures[call_id] = future
            try:
                pickle.dump((call_id, function, args), self._process.stdin)
                self._process.stdin.flush()
            except (OSError, ValueError) as error:  # the process is gone
                del self._futures[call_id]
                raise RuntimeError(f"the drawing process has ended ({error})") from None
        return future

    def close(self) -> None:
        """Let the process end (it exits when its input closes) and reap it; calls in flight
        fail. Also after the process died (the reader saw its output end)."""
        with self._lock:
            self._closed = True
            try:
                self._process.stdin.close()  # a second time does nothing
            except OSError:  # the process died with bytes unread
                pass
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=5)

    def _read(self) -> None:
        stream = self._process.stdout
        try:
            while True:
                call_id, ok, value = pickle.load(stream)
                with self._lock:
                    future = self._futures.pop(call_id)
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except Exception:  # EOF (the process ended: closed, or died) or a garbled answer
            pass  # either way no more answers: the calls in flight fail below
        stream.close()
        with self._lock:
            self._closed = True
            left, self._futures = list(self._futures.values()), {}
        for future in left:
            future.set_exception(RuntimeError("the drawing process ended before this call"))


def serve() -> None:
    """The child's loop: run each call read from standard input, answer on standard output."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not garble the answers
    from .plots import warm_up

    warm_up()  # matplotlib, while the run starts
    while True:
        try:
            call_id, function, args = pickle.load(requests)
        except EOFError:
            break
        try:
            answer = (call_id, True, function(*args))
        except Exception as error:
            answer = (call_id, False, error)
        try:
            message = pickle.dumps(answer)
        except Exception as error:  # an exception that does not pickle
            message = pickle.dumps((call_id, False, RuntimeError(f"{type(error).__name__}")))
        answers.write(message)
        answers.flush()
    # Every figure's file was closed when its call returned: nothing to tear down.
    os._exit(0)
