"""Ctrl-C while ansible-runner runs a play: the play's processes are stopped, and the caller gets Interrupted.

A real ansible-playbook on localhost (connection=local) runs a long task; SIGINT goes to the kubeplay
process only (as `kill -INT`, not a terminal's whole process group). Without the cancel callback the
exception left ansible-playbook running in its own session. The only timing asserted is a generous
bound on getting control back (the feature: ansible-runner is polled every 0.25 s).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from tests.conftest import require_module

require_module("ansible_runner")
pytestmark = pytest.mark.integration

DRIVER = """
import sys
from pathlib import Path
from kubeplay.console import Output
from kubeplay.deploy.inventory import parse_inventory
from kubeplay.deploy.runner import Playbook, Workspace, run_playbook, write_inventory
from kubeplay.errors import Interrupted

work = Path(sys.argv[1])
inv = parse_inventory({"all": {"hosts": {"node1": {
    "ansible_host": "127.0.0.1", "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}})
ws = Workspace(work / "state")
write_inventory(ws, inv, {})
try:
    run_playbook(ws, inv, Playbook("long", work / "long.yml", work), Output(quiet=True))
except Interrupted as exc:
    print(exc.message, flush=True)
    sys.exit(130)
print("the play ended without being interrupted", flush=True)
"""
CONTROL_BACK = 5.0


def processes_with(marker: str) -> list[int]:
    """PIDs whose command line holds `marker` (arguments are NUL-separated there)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_sigint_stops_the_play_and_raises_interrupted(tmp_path: Path) -> None:
    marker = f"{300 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"  # a sleep length no one else uses
    (tmp_path / "long.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        f"    - name: take long\n      ansible.builtin.command: sleep {marker}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not processes_with(marker) and proc.poll() is None:
        assert time.monotonic() < deadline, "the play's task never started"
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    seconds = time.monotonic() - sent
    assert proc.returncode == 130, stdout + stderr
    assert seconds < CONTROL_BACK, f"{seconds:.1f} s from SIGINT to exit"
    assert "long: interrupted, ansible-playbook was stopped" in stdout
    gone = time.monotonic() + 10
    while processes_with(marker) and time.monotonic() < gone:
        time.sleep(0.1)
    assert processes_with(marker) == [], "the play's task outlived the interrupted run"
