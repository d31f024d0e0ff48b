"""Running kubeplay-registry and kubeplay-nginx: as systemd units, or (`--no-systemd`) as child processes.

`--no-systemd` is for hosts where systemd is not PID 1 (containers, CI): install renders and checks the
same configuration, then serves in the foreground until interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class ForegroundServices:
    """Child processes for --no-systemd; stop() ends exactly the processes this object started."""

    services: list[ChildService] = field(default_factory=list)

    def start(self, svc: ChildService) -> None:
        stop_stale(svc)
        svc.log_file.parent.mkdir(parents=True, exist_ok=True)
        with svc.log_file.open("ab") as log:
            svc.proc = subprocess.Popen(svc.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        atomic_write(svc.pid_file, f"{svc.proc.pid}\n".encode())
        self.services.append(svc)

    def check_alive(self) -> None:
        for svc in self.services:
            if svc.proc is not None and svc.proc.poll() is not None:
                tail = "\n".join(svc.log_file.read_text(errors="replace").splitlines()[-8:])
                raise StepFailed(f"{svc.name} exited with {svc.proc.returncode}: {tail}", hint=f"see {svc.log_file}")

    def stop(self, timeout: float = 10) -> None:
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

    def wait(self) -> None:
        """Block until a signal arrives or a child exits."""
        stop = {"now": False}

        def handler(signum: int, frame: object) -> None:
            stop["now"] = True

        old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not stop["now"]:
                if any(s.proc is not None and s.proc.poll() is not None for s in self.services):
                    self.check_alive()
                time.sleep(0.2)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
