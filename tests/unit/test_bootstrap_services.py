"""The --no-systemd supervisor: a child that dies is started again and the restart is recorded for
`kubeplay status`; one that keeps dying is given up on, naming its log."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from kubeplay.bootstrap.services import (
    RESTART_BURST,
    ChildService,
    ForegroundServices,
    process_running,
    read_supervisor_record,
)
from kubeplay.bootstrap.status import service_restarts
from kubeplay.errors import StepFailed


def sleeper(tmp_path: Path, name: str = "sleeper") -> ChildService:
    marker = str(tmp_path / f"{name}.marker")
    argv = [sys.executable, "-c", "import time, sys; time.sleep(60)", marker]
    return ChildService(name, argv, marker, tmp_path / f"{name}.pid", tmp_path / f"{name}.log")


def kill(svc: ChildService) -> int:
    assert svc.proc is not None
    pid = svc.proc.pid
    os.kill(pid, signal.SIGKILL)
    svc.proc.wait(timeout=10)
    return pid


def test_a_killed_child_is_started_again_and_status_shows_the_restart(tmp_path: Path) -> None:
    services = ForegroundServices()
    svc = sleeper(tmp_path)
    try:
        services.start(svc)
        assert services.restart_dead() == []
        first = kill(svc)
        assert services.restart_dead() == ["sleeper"]
        assert svc.proc is not None and svc.proc.pid != first and process_running(svc.proc.pid, svc.marker)
        record = read_supervisor_record(tmp_path)["sleeper"]
        assert record["restarts"] == 1 and record["last_exit"] == -signal.SIGKILL
        shown = service_restarts(tmp_path, systemd=False)["sleeper"]
        assert shown["state"] == "running" and shown["restarts"] == 1 and shown["last_restart"]
    finally:
        services.stop()
    assert service_restarts(tmp_path, systemd=False)["sleeper"]["state"] == "stopped"


def test_supervise_restarts_within_two_seconds(tmp_path: Path) -> None:
    services = ForegroundServices()
    svc = sleeper(tmp_path)
    stop = threading.Event()
    watcher = threading.Thread(target=services.supervise, args=(stop,))
    try:
        services.start(svc)
        watcher.start()
        killed_at = time.monotonic()
        first = kill(svc)
        while svc.proc is None or svc.proc.pid == first:
            assert time.monotonic() - killed_at < 2.0, "not restarted within 2 s"
            time.sleep(0.02)
    finally:
        stop.set()
        watcher.join(timeout=10)
        services.stop()


def test_a_child_that_keeps_dying_is_given_up_on(tmp_path: Path) -> None:
    services = ForegroundServices()
    svc = sleeper(tmp_path)
    try:
        services.start(svc)
        with pytest.raises(StepFailed, match=f"exited {RESTART_BURST} times"):
            for n in range(RESTART_BURST):
                kill(svc)
                services.restart_dead(now=float(n))
    finally:
        services.stop()
