"""Progress on long work: a bar per stage on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress

logger = logging.getLogger(__name__)

LOG_STEP_PERCENT = 10


class ProgressDisplay:
    """Receives ``(perturbed_tf, stage, done, total)`` and shows it.

    On a terminal each stage of each TF gets a rich progress bar; elsewhere
    (files, pipes, CI) a log line is written every 10 % of a stage. In a batch
    a bar counts the TFs done and a stage's bar goes away when it is complete.
    The bars (and rich) come with the first progress, after the inputs are
    checked, so that a bad input is reported without importing rich.
    """

    def __init__(self, stream: TextIO, batch: bool = False) -> None:
        self.interactive = stream.isatty()
        self.batch = batch
        self._stream = stream
        self._tfs_task: int | None = None
        self._bars: Progress | None = None
        self._starting = threading.Lock()
        self._closed = False
        self._tasks: dict[tuple[str, str], int] = {}
        self._logged: dict[tuple[str, str], int] = {}

    def _shown_bars(self) -> Progress | None:
        """The started bars on a terminal (made on first use), else None."""
        if not self.interactive:
            return None
        with self._starting:
            if self._bars is None and not self._closed:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                )

                self._bars = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("bootstraps"),
                    TimeElapsedColumn(),
                    console=Console(file=self._stream),
                    transient=False,
                )
                self._bars.start()
            return self._bars

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._starting:
            self._closed = True
            if self._bars is not None:
                self._bars.stop()

    def update(self, perturbed_tf: str, stage: str, done: int, total: int) -> None:
        key = (perturbed_tf, stage)
        bars = self._shown_bars()
        if bars is not None:
            if key not in self._tasks:
                self._tasks[key] = bars.add_task(f"{perturbed_tf} {stage}", total=total)
            bars.update(self._tasks[key], completed=done)
            if self.batch and done >= total:
                bars.remove_task(self._tasks.pop(key))
            return
        step = done * 100 // max(total, 1) // LOG_STEP_PERCENT
        if step > self._logged.get(key, -1) or done == total:
            self._logged[key] = step
            logger.info("%s %s: %d/%d bootstraps", perturbed_tf, stage, done, total)

    def update_tfs(self, done: int, total: int) -> None:
        """Batch progress: TFs finished (completed, stopped or failed) of all."""
        bars = self._shown_bars()
        if bars is not None:
            if self._tfs_task is None:
                self._tfs_task = bars.add_task("TFs done", total=total)
            bars.update(self._tfs_task, completed=done)
            return
        logger.info("batch: %d/%d TFs done", done, total)
