"""One place for output: a rich Console on stderr, and JSON events on stdout when asked for."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console


@dataclass
class Output:
    """Owns everything kubeplay prints. `quiet` silences progress; `json_events` writes JSON lines."""

    quiet: bool = False
    json_events: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))
    started: float = field(default_factory=time.monotonic)

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}")

    def error(self, message: str, hint: str | None = None) -> None:
        self.console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
        if hint:
            self.console.print(f"[dim]hint:[/] {hint}", soft_wrap=True)

    def event(self, kind: str, **data: Any) -> None:
        """Write one JSON event on stdout when --json is on."""
        if self.json_events:
            sys.stdout.write(json.dumps({"event": kind, **data}, default=str) + "\n")
            sys.stdout.flush()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def summary(self, message: str) -> None:
        """The one line every command ends with: what it did, how much, how long."""
        self.console.print(f"[green]✓[/] {message} [dim]({self.elapsed():.1f}s)[/]")


_output = Output()


def get_output() -> Output:
    return _output


def configure(quiet: bool = False, json_events: bool = False) -> Output:
    _output.quiet = quiet
    _output.json_events = json_events
    return _output


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
