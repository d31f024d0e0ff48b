"""ansible-runner driven for real: a tiny playbook on localhost (connection=local, no SSH).

Asserts what an operator sees (plays, failing task and host, per-host recap), the JSON event log, and that
secrets given in the inventory never reach the artifacts directory, the logs or any process's command line.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from tests.conftest import require_module

from kubeplay.console import Output
from kubeplay.deploy.inventory import parse_inventory
from kubeplay.deploy.progress import redact, result_message
from kubeplay.deploy.runner import Playbook, Workspace, raise_for_result, run_playbook, write_inventory
from kubeplay.deploy.steps import check_access
from kubeplay.errors import StepFailed

require_module("ansible_runner")

BECOME_SECRET = "Kp-become-7f3a9c1e"
SSH_SECRET = "Kp-ssh-2b8d4e6f"

PLAYBOOK = """
- name: Tiny play
  hosts: all
  gather_facts: false
  tasks:
    - name: say hello
      ansible.builtin.command: echo hello
    - name: print a secret by mistake
      ansible.builtin.debug:
        msg: "the password is {{ ansible_become_pass }}"
    - name: take a while
      ansible.builtin.command: sleep 2
    - name: write a file
      ansible.builtin.copy:
        content: "x\\n"
        dest: "{{ out_file }}"
    - name: fail here
      ansible.builtin.fail:
        msg: "boom on {{ inventory_hostname }}"
"""


def local_inventory(**extra: Any) -> Any:
    return parse_inventory(
        {
            "all": {
                "vars": {"ansible_become_pass": BECOME_SECRET},
                "hosts": {
                    "node1": {
                        "ansible_host": "127.0.0.1",
                        "ansible_connection": "local",
                        "ansible_python_interpreter": sys.executable,
                        "ansible_ssh_pass": SSH_SECRET,
                        **extra,
                    }
                },
            }
        }
    )


def cmdlines() -> list[str]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                out.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return out


def all_text(root: Path) -> str:
    return "\n".join(p.read_bytes().decode(errors="replace") for p in root.rglob("*") if p.is_file())


@pytest.mark.slow
def test_run_shows_progress_logs_events_and_never_leaks_secrets(tmp_path: Path) -> None:
    playbook = tmp_path / "tiny.yml"
    playbook.write_text(PLAYBOOK)
    inv = local_inventory()
    ws = Workspace(tmp_path / "state")
    write_inventory(ws, inv, {"out_file": str(tmp_path / "written.txt")})
    screen = io.StringIO()
    out = Output(console=Console(file=screen, width=140, force_terminal=False, color_system=None))

    seen: list[str] = []
    secret_files_during_run: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.extend(cmdlines())
            for f in ws.inventory_dir.rglob("zz-kubeplay-secrets.yml"):
                secret_files_during_run.append(f.stat().st_mode & 0o777)
            stop.wait(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = run_playbook(ws, inv, Playbook("tiny", playbook, tmp_path), out)
    finally:
        stop.set()
        sampler.join()

    # What the operator sees.
    shown = screen.getvalue()
    assert "play: Tiny play" in shown
    assert "failed node1: fail here: boom on node1" in shown
    assert "node1" in shown.split("tiny —")[-1]  # the per-host recap
    assert (tmp_path / "written.txt").read_text() == "x\n"
    assert result.hosts["node1"]["failed"] == 1
    assert result.hosts["node1"]["changed"] >= 2
    with pytest.raises(StepFailed) as info:
        raise_for_result(result, hint="run again")
    assert "task 'fail here' failed on node1: boom on node1" in info.value.message
    assert str(result.log) in (info.value.hint or "")

    # The JSON event log: one event per line, the failure with host, task and message.
    events = [json.loads(line) for line in result.events.read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "playbook_on_play_start"
    assert "playbook_on_stats" in kinds
    failed = [e for e in events if e["event"] == "runner_on_failed"]
    assert failed == [{**failed[0], "host": "node1", "task": "fail here", "message": "boom on node1"}]
    assert "TASK [fail here]" in result.log.read_text()

    # Secrets: the printed one is redacted, none is anywhere on disk or in any command line.
    assert "the password is ********" in result.log.read_text()
    assert secret_files_during_run and set(secret_files_during_run) == {0o600}
    assert not list(ws.inventory_dir.rglob("zz-kubeplay-secrets.yml"))
    disk = all_text(ws.root)
    assert "job_events" in "\n".join(str(p) for p in ws.root.rglob("*"))
    for secret in (BECOME_SECRET, SSH_SECRET):
        assert secret not in disk
        assert secret not in shown
        assert not [c for c in seen if secret in c]
    assert any("ansible-playbook" in c for c in seen)  # the sampler did see the run


def free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_preflight_names_the_unreachable_node_with_the_ssh_error(tmp_path: Path) -> None:
    port = free_closed_port()
    inv = parse_inventory(
        {
            "all": {
                "hosts": {
                    "ok1": {"ansible_host": "127.0.0.1", "ansible_connection": "local"},
                    "gone2": {"ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": "nobody"},
                },
                "vars": {"ansible_python_interpreter": sys.executable},
                "children": {"kube_node": {"hosts": {"ok1": None, "gone2": None}}},
            }
        }
    )
    ws = Workspace(tmp_path / "state")
    write_inventory(ws, inv, {})
    out = Output(console=Console(file=io.StringIO(), width=140, force_terminal=False))
    with pytest.raises(StepFailed) as info:
        check_access(ws, inv, tmp_path, out)
    message = info.value.message
    assert message.startswith("preflight: cannot work on gone2:")
    assert "gone2: unreachable over SSH:" in message
    assert f"port {port}: Connection refused" in message
    assert "ok1" not in message
    assert "nothing was changed" in (info.value.hint or "")


def test_redact_replaces_secrets_everywhere_in_place() -> None:
    event: dict[str, Any] = {"stdout": "pw=abc123", "event_data": {"res": {"msg": ["x abc123 y"]}}}
    assert redact(event, ["abc123"]) is event
    assert json.dumps(event).count("abc123") == 0
    assert event["event_data"]["res"]["msg"] == ["x ******** y"]


def test_result_message_prefers_msg_then_stderr() -> None:
    assert result_message({"msg": "bad thing", "stderr": "ignored"}) == "bad thing"
    assert result_message({"stderr": "line1\nline2"}) == "line1 | line2"
    assert result_message({"results": [{"failed": False}, {"failed": True, "msg": "item broke"}]}) == "item broke"
