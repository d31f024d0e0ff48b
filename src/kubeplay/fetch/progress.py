"""One progress bar over a whole download plan: bytes, rate, ETA and items done; thread-safe."""

from __future__ import annotations

import threading

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from kubeplay.console import get_output


class TransferProgress:
    """A rich bar on the shared stderr console; a no-op when disabled or --quiet."""

    def __init__(self, title: str, items: int, total_bytes: int, *, enabled: bool = True) -> None:
        out = get_output()
        self.enabled = enabled and not out.quiet
        self.items = items
        self.items_done = 0
        self.title = title
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._lock = threading.Lock()
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[items]}"),
                console=out.console,
                transient=False,
            )
            self._task = self._progress.add_task(title, total=total_bytes or None, items=self._items_text())

    def _items_text(self) -> str:
        return f"{self.items_done}/{self.items} {self.title}"

    def __enter__(self) -> TransferProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, n: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def add_total(self, n: int) -> None:
        if self._progress is not None and self._task is not None and n:
            with self._lock:
                task = self._progress.tasks[self._task]
                self._progress.update(self._task, total=(task.total or 0) + n)

    def add_item(self) -> None:
        self.items += 1
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, items=self._items_text())

    def item_done(self) -> None:
        self.items_done += 1
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, items=self._items_text())
