"""Running kubeplay-registry and kubeplay-nginx: as systemd units, or (`--no-systemd`) as child processes.

`--no-systemd` is for hosts where systemd is not PID 1 (containers, CI): install renders and checks the
same configuration, then serves in the foreground until interrupted, starting again a child that dies
(as the units' Restart=always does).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeplay.bootstrap.context import run_command
from kubeplay.bootstrap.record import InstallRecord, write_owned
from kubeplay.errors import StepFailed
from kubeplay.state import atomic_write


def install_unit(record: InstallRecord, units_dir: Path, name: str, text: str) -> bool:
    """Write a unit file install owns; True when it changed (a daemon-reload is then due)."""
    record.add("unit", name)
    return write_owned(record, units_dir / name, text.encode())


def systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if check:
        return run_command(["systemctl", *args], timeout=120, what=f"systemctl {' '.join(args)}")
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=120, check=False)


def is_active(name: str) -> bool:
    return systemctl("is-active", "--quiet", name, check=False).returncode == 0


def unit_failure(name: str) -> str:
    """The last lines of a unit's journal, for an error message."""
    proc = subprocess.run(
        ["journalctl", "-u", name, "-n", "12", "--no-pager", "-o", "cat"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.stdout.strip() or "(no journal output)"


def start_units(names: list[str], restart: set[str]) -> None:
    """Enable every unit; restart those in `restart`, start the rest if inactive; raise StepFailed with logs."""
    systemctl("daemon-reload")
    for name in names:
        systemctl("enable", "--quiet", name)
        action = "restart" if name in restart or not is_active(name) else None
        if action:
            proc = systemctl(action, name, check=False)
            if proc.returncode != 0:
                raise StepFailed(f"{name} did not start: {unit_failure(name)}", hint=f"see `journalctl -u {name}`")


@dataclass
class ChildService:
    name: str
    argv: list[str]
    marker: str  # a string in its command line that proves a process is ours (its config path)
    pid_file: Path
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None


def _own_process(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return marker in cmdline


def stop_stale(svc: ChildService, timeout: float = 10) -> None:
    """Stop a process left by an earlier foreground run (pid file), only if its command line is ours."""
    try:
        pid = int(svc.pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    if _own_process(pid, svc.marker):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _own_process(pid, svc.marker):
            time.sleep(0.05)
        if _own_process(pid, svc.marker):
            os.kill(pid, signal.SIGKILL)
    svc.pid_file.unlink(missing_ok=True)


# A child that dies is started again after this long (systemd units: RestartSec=1), so nodes see it back
# within 2 s; one that dies RESTART_BURST times within RESTART_WINDOW s is given up on, as systemd's
# StartLimitBurst does, and the foreground install ends naming its log.
RESTART_DELAY = 1.0
RESTART_BURST = 5
RESTART_WINDOW = 10.0
SUPERVISOR_RECORD = "foreground-services.json"


def supervisor_record(state_dir: Path) -> Path:
    """Where the --no-systemd supervisor records each child's pid, starts and restarts (`kubeplay status`)."""
    return state_dir / SUPERVISOR_RECORD


def read_supervisor_record(state_dir: Path) -> dict[str, dict[str, Any]]:
    """{service name: {pid, started, restarts, last_restart, last_exit, marker}}; {} when there is none."""
    path = supervisor_record(state_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def process_running(pid: int, marker: str) -> bool:
    """Whether `pid` is alive (not a zombie) and its command line holds `marker`."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and _own_process(pid, marker)


@dataclass
class ForegroundServices:
    """Child processes for --no-systemd; stop() ends exactly the processes this object started.

    supervise() (wait() with signals, or a thread given a stop event) starts a child again when it dies,
    and records every start and restart in the state directory for `kubeplay status`."""

    services: list[ChildService] = field(default_factory=list)
    state_dir: Path | None = None
    record: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _deaths: dict[str, list[float]] = field(default_factory=dict)
    _stopping: bool = False

    def _spawn(self, svc: ChildService) -> None:
        svc.log_file.parent.mkdir(parents=True, exist_ok=True)
        with svc.log_file.open("ab") as log:
            svc.proc = subprocess.Popen(svc.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        atomic_write(svc.pid_file, f"{svc.proc.pid}\n".encode())

    def _save_record(self) -> None:
        if self.state_dir is not None:
            atomic_write(supervisor_record(self.state_dir), json.dumps(self.record, indent=2, sort_keys=True).encode())

    def start(self, svc: ChildService) -> None:
        stop_stale(svc)
        with self._lock:
            self._stopping = False
            self._spawn(svc)
            assert svc.proc is not None
            self.services.append(svc)
            self.state_dir = self.state_dir or svc.pid_file.parent
            entry = {"pid": svc.proc.pid, "started": time.time(), "marker": svc.marker}
            self.record[svc.name] = {"restarts": 0, "last_restart": None, "last_exit": None, **entry}
            self._save_record()

    def check_alive(self) -> None:
        for svc in self.services:
            if svc.proc is not None and svc.proc.poll() is not None:
                raise StepFailed(
                    f"{svc.name} exited with {svc.proc.returncode}: {_tail(svc)}", hint=f"see {svc.log_file}"
                )

    def restart_dead(self, now: float | None = None) -> list[str]:
        """Start again every child that has exited; return their names. Raises StepFailed for a child that
        died RESTART_BURST times within RESTART_WINDOW seconds (it would only keep dying)."""
        restarted: list[str] = []
        with self._lock:
            if self._stopping:
                return restarted
            for svc in self.services:
                if svc.proc is None or svc.proc.poll() is None:
                    continue
                code = svc.proc.returncode
                moment = time.monotonic() if now is None else now
                deaths = [t for t in self._deaths.get(svc.name, []) if moment - t < RESTART_WINDOW] + [moment]
                self._deaths[svc.name] = deaths
                if len(deaths) >= RESTART_BURST:
                    raise StepFailed(
                        f"{svc.name} exited {len(deaths)} times within {RESTART_WINDOW:.0f} s (last: {code}): "
                        f"{_tail(svc)}",
                        hint=f"see {svc.log_file}",
                    )
                self._spawn(svc)
                assert svc.proc is not None
                entry = self.record.setdefault(svc.name, {"restarts": 0, "marker": svc.marker})
                entry.update(
                    pid=svc.proc.pid,
                    restarts=int(entry.get("restarts") or 0) + 1,
                    last_restart=time.time(),
                    last_exit=code,
                )
                restarted.append(svc.name)
            if restarted:
                self._save_record()
        return restarted

    def supervise(self, stop: threading.Event, on_restart: Callable[[str], object] | None = None) -> None:
        """Until `stop` is set: every RESTART_DELAY seconds, start again the children that died."""
        while not stop.wait(RESTART_DELAY / 4):
            dead = [s for s in self.services if s.proc is not None and s.proc.poll() is not None]
            if not dead:
                continue
            # a child that dies at once again should not spin: the first restart waits up to RESTART_DELAY
            if stop.wait(max(0.0, RESTART_DELAY - RESTART_DELAY / 4)):
                return
            for name in self.restart_dead():
                if on_restart is not None:
                    on_restart(name)

    def stop(self, timeout: float = 10) -> None:
        with self._lock:
            self._stopping = True
            for svc in reversed(self.services):
                if svc.proc is not None and svc.proc.poll() is None:
                    svc.proc.terminate()
                    try:
                        svc.proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        svc.proc.kill()
                        svc.proc.wait(timeout=timeout)
                svc.pid_file.unlink(missing_ok=True)
            self.services.clear()
            # the next start (another install, in this process) records in its own state directory
            self.state_dir = None
            self.record = {}
            self._deaths = {}

    def wait(self, on_restart: Callable[[str], object] | None = None) -> None:
        """Supervise the children until SIGTERM or SIGINT (a child that dies is started again)."""
        stop = threading.Event()

        def handler(signum: int, frame: object) -> None:
            stop.set()

        old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.supervise(stop, on_restart)
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _tail(svc: ChildService, lines: int = 8) -> str:
    try:
        return "\n".join(svc.log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
