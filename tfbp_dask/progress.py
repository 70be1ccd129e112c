"""Progress on long work: a bar per stage on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

logger = logging.getLogger(__name__)

LOG_STEP_PERCENT = 10


class ProgressDisplay:
    """Receives ``(perturbed_tf, stage, done, total)`` and shows it.

    On a terminal each stage of each TF gets a rich progress bar; elsewhere
    (files, pipes, CI) a log line is written every 10 % of a stage. In a batch
    a bar counts the TFs done and a stage's bar goes away when it is complete.
    """

    def __init__(self, stream: TextIO, batch: bool = False) -> None:
        self.interactive = stream.isatty()
        self.batch = batch
        self._tfs_task: int | None = None
        self._bars: Progress | None = None
        self._tasks: dict[tuple[str, str], int] = {}
        self._logged: dict[tuple[str, str], int] = {}
        if self.interactive:
            self._bars = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("bootstraps"),
                TimeElapsedColumn(),
                console=Console(file=stream),
                transient=False,
            )

    def __enter__(self) -> ProgressDisplay:
        if self._bars is not None:
            self._bars.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bars is not None:
            self._bars.stop()

    def update(self, perturbed_tf: str, stage: str, done: int, total: int) -> None:
        key = (perturbed_tf, stage)
        if self._bars is not None:
            if key not in self._tasks:
                self._tasks[key] = self._bars.add_task(f"{perturbed_tf} {stage}", total=total)
            self._bars.update(self._tasks[key], completed=done)
            if self.batch and done >= total:
                self._bars.remove_task(self._tasks.pop(key))
            return
        step = done * 100 // max(total, 1) // LOG_STEP_PERCENT
        if step > self._logged.get(key, -1) or done == total:
            self._logged[key] = step
            logger.info("%s %s: %d/%d bootstraps", perturbed_tf, stage, done, total)

    def update_tfs(self, done: int, total: int) -> None:
        """Batch progress: TFs finished (completed, stopped or failed) of all."""
        if self._bars is not None:
            if self._tfs_task is None:
                self._tfs_task = self._bars.add_task("TFs done", total=total)
            self._bars.update(self._tfs_task, completed=done)
            return
        logger.info("batch: %d/%d TFs done", done, total)
