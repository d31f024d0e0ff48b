"""Everything kubeplay prints goes through one `Output`, made once by the CLI and handed down.

rich stays inside this module: callers pass text and data (`Table`, `Mark`), never markup or rich
objects, so a message that contains brackets (an IPv6 address, a YAML list) is printed as written.
Human output goes to stderr; with `--json-events` one JSON object per line goes to stdout.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from rich import box as rich_box
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table as RichTable

# What a line of a step, check or result is: the mark before it and its colour live here only.
Mark = Literal["ok", "done", "skipped", "failed", "warn", "stopped", "running", "info"]
_MARKS: dict[str, tuple[str, str]] = {
    "ok": ("✓", "green"),
    "done": ("·", "dim"),
    "skipped": ("-", "dim"),
    "failed": ("✗", "red"),
    "warn": ("!", "yellow"),
    "stopped": ("■", "yellow"),
    "running": ("▶", "bold"),
    "info": (" ", ""),
}


@dataclass(frozen=True)
class Cell:
    """A table cell shown in the colour of a mark, for a result: `Cell("pass", "ok")`, `Cell("FAIL", "failed")`."""

    text: str
    mark: Mark


@dataclass
class Table:
    """A table as data: the caller fills it, `Output.table` (or `Output.live_table`) renders it."""

    columns: Sequence[str]
    rows: list[Sequence[object]] = field(default_factory=list)
    title: str | None = None
    caption: str | None = None
    right: frozenset[str] = frozenset()  # columns aligned right (numbers)
    fold: frozenset[str] = frozenset()  # columns broken anywhere when too long (URLs) instead of cut short
    header: bool = True
    boxed: bool = True

    def add(self, *cells: object) -> None:
        self.rows.append(cells)


def _cell(value: object) -> str:
    if isinstance(value, Cell):
        style = _MARKS[value.mark][1]
        return f"[{style}]{escape(value.text)}[/]" if style else escape(value.text)
    return escape(str(value))


def _render_table(table: Table) -> RichTable:
    out = RichTable(
        title=table.title,
        title_justify="left",
        caption=table.caption,
        show_header=table.header,
        box=rich_box.HEAVY_HEAD if table.boxed else None,
        expand=False,
    )
    for name in table.columns:
        out.add_column(
            name,
            justify="right" if name in table.right else "left",
            overflow="fold" if name in table.fold else "ellipsis",
        )
    for row in table.rows:
        out.add_row(*(_cell(cell) for cell in row))
    return out


class StatusLine:
    """A spinner with a message while work runs (on a terminal, without --quiet); prints nothing elsewhere."""

    def __init__(self, console: Console | None, message: str) -> None:
        self._status = console.status(escape(message)) if console is not None else None

    def __enter__(self) -> StatusLine:
        if self._status is not None:
            self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()

    def update(self, message: str, *, detail: str | None = None) -> None:
        """Show `message` instead (with `detail` dimmed after it)."""
        if self._status is not None:
            self._status.update(escape(message) + (f" [dim]{escape(detail)}[/]" if detail else ""))


class TransferBar:
    """One progress bar over a set of transfers: bytes, rate, ETA and items done; thread-safe.

    A no-op when the Output is quiet or the caller disabled it.
    """

    def __init__(self, console: Console | None, title: str, items: int, total_bytes: int) -> None:
        self.items = items
        self.items_done = 0
        self.title = title
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if console is not None:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[items]}"),
                console=console,
                transient=False,
            )
            self._task = self._progress.add_task(escape(title), total=total_bytes or None, items=self._items_text())

    @property
    def enabled(self) -> bool:
        return self._progress is not None

    def _items_text(self) -> str:
        return escape(f"{self.items_done}/{self.items} {self.title}")

    def __enter__(self) -> TransferBar:
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
        with self._lock:
            self.items += 1
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, items=self._items_text())

    def item_done(self) -> None:
        with self._lock:
            self.items_done += 1
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, items=self._items_text())


class LiveTable:
    """A table redrawn in place on a terminal (`update`); prints nothing elsewhere. Ends with the last state."""

    def __init__(self, console: Console, table: Table, live: bool) -> None:
        self._console = console
        self._live = Live(_render_table(table), console=console, refresh_per_second=4, transient=True) if live else None

    @property
    def active(self) -> bool:
        return self._live is not None

    def __enter__(self) -> LiveTable:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def update(self, table: Table) -> None:
        if self._live is not None:
            self._live.update(_render_table(table))


@dataclass
class Output:
    """Owns everything kubeplay prints. `quiet` silences progress and info; `json_events` writes JSON lines.

    Made once per command (the CLI's root callback) and passed down to the library code that needs it.
    Tests make their own, usually `Output(quiet=True)`, or with `console=` a recording Console.
    """

    quiet: bool = False
    json_events: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))
    started: float = field(default_factory=time.monotonic)
    _event_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def is_terminal(self) -> bool:
        return self.console.is_terminal

    # --- lines ---------------------------------------------------------------------------------------

    def info(self, message: str) -> None:
        """A line of progress for people; silenced by --quiet."""
        if not self.quiet:
            self.console.print(message, markup=False, soft_wrap=True)

    def heading(self, message: str, *, always: bool = False) -> None:
        """A bold line that opens a section of output; silenced by --quiet unless `always` (a product's part)."""
        if always or not self.quiet:
            self.console.print(f"[bold]{escape(message)}[/]", soft_wrap=True)

    def line(self, text: str = "") -> None:
        """A line of the command's product (plan rows, YAML, a command to run): printed even with --quiet."""
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def mark(self, mark: Mark, message: str, *, detail: str | None = None, always: bool = False) -> None:
        """A line with a status mark (a step done, a check failed...); `detail` is dimmed after it."""
        if self.quiet and not always and mark not in ("failed", "warn"):
            return
        symbol, style = _MARKS[mark]
        text = f"[{style}]{symbol}[/] {escape(message)}" if style else f"{symbol} {escape(message)}"
        if detail:
            text += f" [dim]{escape(detail)}[/]"
        self.console.print(text, soft_wrap=True)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)

    def error(self, message: str, hint: str | None = None) -> None:
        self.console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
        if hint:
            self.console.print(f"[dim]hint:[/] {escape(hint)}", soft_wrap=True)

    def summary(self, message: str) -> None:
        """The one line every command ends with: what it did, how much, how long."""
        self.console.print(f"[green]✓[/] {escape(message)} [dim]({self.elapsed():.1f}s)[/]", soft_wrap=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # --- structured ----------------------------------------------------------------------------------

    def event(self, kind: str, **data: Any) -> None:
        """Write one JSON event on stdout when --json-events is on (thread-safe: one line per event)."""
        if self.json_events:
            line = json.dumps({"event": kind, **data}, default=str) + "\n"
            with self._event_lock:
                sys.stdout.write(line)
                sys.stdout.flush()

    def table(self, table: Table) -> None:
        """Print a table (the command's product: printed even with --quiet)."""
        self.console.print(_render_table(table))

    # --- long work -----------------------------------------------------------------------------------

    def status(self, message: str) -> StatusLine:
        """A spinner with `message` while the block runs, on a terminal and without --quiet; else nothing."""
        return StatusLine(None if self.quiet or not self.console.is_terminal else self.console, message)

    def transfer(self, title: str, items: int = 0, total_bytes: int = 0, *, enabled: bool = True) -> TransferBar:
        """A byte progress bar for downloads, uploads and copies (enter it with `with`)."""
        return TransferBar(self.console if enabled and not self.quiet else None, title, items, total_bytes)

    @contextmanager
    def byte_progress(self, title: str) -> Iterator[Callable[[int, int], None]]:
        """Yields `update(done, total)` for work that reports its own byte counts (pack, verify, extract)."""
        if self.quiet:
            yield lambda done, total: None
            return
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        with progress:
            task = progress.add_task(escape(title), total=None)

            def update(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total or None)

            yield update

    def live_table(self, table: Table) -> LiveTable:
        """A table redrawn in place while work runs (on a terminal, without --quiet); see `LiveTable`."""
        return LiveTable(self.console, table, live=not self.quiet and self.console.is_terminal)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
