"""Booting and stopping lab nodes with `systemd-nspawn --boot`, by PID, without a systemd on the host.

The host's PID 1 need not be systemd: `--register=no --keep-unit` keeps nspawn off the system bus
(no machined, no scope unit), `--console=passive` lets it run with no TTY, its output goes to a log
file. SIGTERM to the nspawn process makes the container's systemd shut down cleanly and nspawn exit.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubeplay.errors import BadInput, MachineError

STOP_TIMEOUT = 30.0
KILL_TIMEOUT = 10.0


def nspawn_argv(root: Path, machine: str, netns: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The systemd-nspawn command line for one lab node."""
    return [
        "systemd-nspawn",
        "--boot",
        f"--directory={root}",
        f"--machine={machine}",
        f"--network-namespace-path=/run/netns/{netns}",
        "--register=no",
        "--keep-unit",
        "--console=passive",
        "--resolv-conf=off",
        # nspawn would bind-mount the host's /etc/localtime, and tzdata's postinst (installed later from the
        # bundle) fails writing through it; the node keeps its own.
        "--timezone=off",
        "--link-journal=no",
        *extra,
    ]


@dataclass
class Started:
    """A started container: its nspawn process and the identity needed to signal it safely later."""

    pid: int
    start_time: int
    popen: subprocess.Popen[bytes]


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_env(pairs: list[str]) -> dict[str, str]:
    """KEY=VALUE strings as a dict (a later KEY wins); BadInput naming the first malformed one."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _ENV_NAME.fullmatch(key):
            raise BadInput(
                f"--nspawn-env {pair!r} is not KEY=VALUE",
                hint="e.g. --nspawn-env SYSTEMD_NSPAWN_API_VFS_WRITABLE=network (KEY: letters, digits, '_')",
            )
        env[key] = value
    return env


def check_env(env: Mapping[str, str]) -> None:
    """BadInput if a key of `env` is not a plain environment variable name (values are never shown)."""
    bad = [key for key in env if not _ENV_NAME.fullmatch(key)]
    if bad:
        raise BadInput(f"nspawn environment names {', '.join(map(repr, bad))} are not valid variable names")


def start(argv: list[str], log: Path, env: Mapping[str, str] | None = None) -> Started:
    """Start nspawn in its own session, output to `log`, with `env` added to this process's environment.

    Returns its PID and start time.
    """
    child_env = {**os.environ, **env} if env else None
    with log.open("ab") as out:
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=child_env,
            )
        except FileNotFoundError as exc:
            raise MachineError("systemd-nspawn is not installed", hint="apt-get install systemd-container") from exc
    start_time = process_start_time(popen.pid)
    return Started(pid=popen.pid, start_time=start_time or 0, popen=popen)


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), or None if no such live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_running(pid: int, start_time: int) -> bool:
    """True if `pid` is alive and is still the process we started (not a reused PID)."""
    return process_start_time(pid) == start_time


def log_tail(log: Path, lines: int = 20) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:])


def stop(pids: list[tuple[int, int]], popens: dict[int, subprocess.Popen[bytes]]) -> list[int]:
    """Stop containers by (pid, start_time): SIGTERM (clean halt), then SIGKILL after a deadline.

    Returns the PIDs still running afterwards (empty on success). PIDs that are gone or reused are skipped.
    """
    live = [(pid, st) for pid, st in pids if is_running(pid, st)]
    for pid, _ in live:
        _signal(pid, signal.SIGTERM)
    remaining = _wait_gone(live, popens, STOP_TIMEOUT)
    for pid, _ in remaining:
        # The container's init first: SIGKILL to nspawn alone leaves init and its pid namespace running,
        # re-parented to the host's PID 1 (seen under load, when a halt outlasted STOP_TIMEOUT).
        for child in children(pid):
            _signal(child, signal.SIGKILL)
        _signal(pid, signal.SIGKILL)
    return [pid for pid, _ in _wait_gone(remaining, popens, KILL_TIMEOUT)]


def cut_power(pid: int, start_time: int, popens: dict[int, subprocess.Popen[bytes]]) -> list[int]:
    """SIGKILL the container's init (nspawn `pid`'s only child), so every process in it dies mid-write.

    Then waits for nspawn to exit (stopping it if it lingers); returns the PIDs still running (empty on success).
    """
    inits = children(pid)
    if not is_running(pid, start_time):  # checked after the read: those are our nspawn's children
        return []
    for child in inits:
        _signal(child, signal.SIGKILL)
    # nspawn exits by itself once its container's init is gone; stop() covers one that does not.
    if not _wait_gone([(pid, start_time)], popens, KILL_TIMEOUT):
        return []
    return stop([(pid, start_time)], popens)


def children(pid: int) -> list[int]:
    """The direct children of `pid` (from /proc/<pid>/task/<pid>/children); empty if it is gone."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [int(word) for word in text.split()]


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(
    pids: list[tuple[int, int]], popens: dict[int, subprocess.Popen[bytes]], timeout: float
) -> list[tuple[int, int]]:
    deadline = time.monotonic() + timeout
    pending = list(pids)
    while pending:
        for pid, _ in pending:
            if pid in popens:
                popens[pid].poll()  # reap our own child so it does not linger as a zombie
        pending = [(pid, st) for pid, st in pending if is_running(pid, st)]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return pending
