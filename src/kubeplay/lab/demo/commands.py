"""How the demo runs things: phases timed into the report, commands with their output in a log file and
their latest line on the console, kubeplay's own CLI as a subprocess, its JSON events read back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kubeplay.console import Output
from kubeplay.errors import KubeplayError, StepFailed
from kubeplay.lab.demo.report import DemoReport, PhaseResult, PhaseStatus

SUBPROCESS_TIMEOUT = 1800


@dataclass
class PhaseNote:
    detail: str = ""
    status: PhaseStatus = "ok"


class PhaseClock:
    """Times phases into the report and announces them on the console."""

    def __init__(self, report: DemoReport, out: Output) -> None:
        self.report = report
        self.out = out

    @contextmanager
    def phase(self, name: str) -> Iterator[PhaseNote]:
        note = PhaseNote()
        self.out.mark("running", name)
        started = time.monotonic()
        try:
            yield note
        except BaseException as exc:
            text = exc.message if isinstance(exc, KubeplayError) else f"{type(exc).__name__}: {exc}"
            self.report.phases.append(PhaseResult(name, time.monotonic() - started, "failed", text.splitlines()[0]))
            raise
        seconds = time.monotonic() - started
        self.report.phases.append(PhaseResult(name, seconds, note.status, note.detail))
        self.out.mark("done", f"{name}: {note.detail}", detail=f"({seconds:.1f}s)")


def run_logged(argv: list[str], log: Path, what: str, out: Output, timeout: float = SUBPROCESS_TIMEOUT) -> str:
    """Run argv with stdout+stderr into `log`, showing its latest line; return the output.

    Raises StepFailed naming `what`, the exit code and the last lines of the log when it fails.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    code = stream_to_log(argv, log, what, out, timeout)
    text = log.read_text(encoding="utf-8", errors="replace")
    if code != 0:
        tail = "\n".join(text.strip().splitlines()[-12:])
        raise StepFailed(f"{what} failed (exit {code}):\n{tail}", hint=f"full output: {log}")
    return text


def stream_to_log(argv: list[str], log: Path, what: str, out: Output, timeout: float) -> int:
    """Run argv with its output in `log`; a status line shows the last line written; return the exit code."""
    deadline = time.monotonic() + timeout
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            with out.status(what) as status:
                while proc.poll() is None:
                    if time.monotonic() > deadline:
                        proc.kill()
                        proc.wait(timeout=30)
                        raise StepFailed(f"{what} did not finish within {timeout:.0f}s", hint=f"output so far: {log}")
                    time.sleep(1)
                    status.update(f"{what}:", detail=_last_line(log)[:110])
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            raise
    return proc.returncode


def _last_line(path: Path) -> str:
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - 4096))
        lines = [ln for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def kubeplay_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "kubeplay", "--json-events", *args]


def events(text: str, kind: str) -> list[dict[str, object]]:
    found = []
    for line in text.splitlines():
        if line.startswith('{"event"'):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == kind:
                found.append(event)
    return found
