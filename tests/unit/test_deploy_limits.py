"""Where a deploy stopped, and why: the failing task and host, and what a container node cannot do."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from kubeplay.deploy.limits import (
    container_limit,
    containers_from_facts,
    load_node_facts,
    raise_for_step,
    save_node_facts,
)
from kubeplay.deploy.progress import Failure
from kubeplay.deploy.runner import RunResult
from kubeplay.errors import DeployStopped, StepFailed


@pytest.mark.parametrize(
    ("task", "message", "expected"),
    [
        (
            "Enable ip forwarding",
            'Failed to reload sysctl: sysctl: permission denied on key "net.ipv4.ip_forward"',
            "kernel parameters",
        ),
        ("Increase sysctl value if lower than minimum", "permission denied", "kernel parameters"),
        (
            "Check dummy module",
            "modprobe: FATAL: Module dummy not found in directory /lib/modules/6.1",
            "kernel modules",
        ),
        ("Disable swap", "swapoff: /swap.img: swapoff failed: Operation not permitted", "swap"),
        ("Mount bpffs", "mount: /sys/fs/bpf: permission denied", "a privileged"),
        ("Install packages", "No package matching 'socat' is available", None),
        ("Download file", "Request failed: HTTP Error 404: Not Found", None),
        (
            "Gather OS information",
            "MODULE FAILURE: No start of json char found | ansible_setup_payload.zip not found",
            None,
        ),
    ],
)
def test_container_limit_names_the_kernel_facility(task: str, message: str, expected: str | None) -> None:
    limit = container_limit(task, message)
    assert (limit is None) if expected is None else (limit is not None and limit.startswith(expected))


def _result(tmp_path: Path, failures: list[Failure], rc: int = 2) -> RunResult:
    return RunResult(
        label="preinstall",
        rc=rc,
        status="failed",
        failures=failures,
        log=tmp_path / "run.log",
        events=tmp_path / "run.events.jsonl",
        seconds=1.0,
        hosts={},
    )


def test_stop_on_a_container_names_step_task_host_limit_and_log(tmp_path: Path) -> None:
    save_node_facts(tmp_path, containers_from_facts({"node0": {"kubeplay fact: container": "systemd-nspawn\n"}}), [])
    failures = [
        Failure("node1", "Enable ip forwarding", "Prepare", "sysctl: permission denied on key", False),
        Failure("node0", "Enable ip forwarding", "Prepare", "sysctl: permission denied on key", False),
    ]
    save_node_facts(tmp_path, {"node1": "systemd-nspawn"}, ["node1"])
    with pytest.raises(DeployStopped) as info:
        raise_for_step(_result(tmp_path, failures), tmp_path, hint="run again to resume at preinstall")
    stop = info.value
    first, second = stop.message.split("\n  ")
    assert first == "preinstall: task 'Enable ip forwarding' failed on node1: sysctl: permission denied on key" + (
        " (also failed on node0)"
    )
    assert second.startswith("stopped at preinstall: node1 is a systemd-nspawn container: kernel parameters (sysctl)")
    assert stop.reason.step == "preinstall" and stop.reason.host == "node1" and stop.reason.container
    assert stop.hint == f"run again to resume at preinstall; full log: {tmp_path / 'run.log'}"
    assert isinstance(stop, StepFailed)


def test_stop_on_a_machine_or_an_unreachable_node_blames_no_container(tmp_path: Path) -> None:
    save_node_facts(tmp_path, {}, ["vm1"])
    with pytest.raises(DeployStopped) as info:
        raise_for_step(
            _result(tmp_path, [Failure("vm1", "Enable ip forwarding", "p", "sysctl: denied", False)]), tmp_path
        )
    assert info.value.reason.limit is None and "\n" not in info.value.message
    save_node_facts(tmp_path, {"ct1": "lxc"}, ["ct1"])
    with pytest.raises(DeployStopped) as info:
        raise_for_step(_result(tmp_path, [Failure("ct1", "Gather facts", "p", "ssh: No route", True)]), tmp_path)
    assert info.value.message.startswith("preinstall: task 'Gather facts' unreachable on ct1: ssh: No route")
    assert info.value.reason.limit is None


def test_success_raises_nothing(tmp_path: Path) -> None:
    raise_for_step(replace(_result(tmp_path, [], rc=0), status="successful"), tmp_path)


def test_node_facts_are_merged_and_forgotten_per_host(tmp_path: Path) -> None:
    assert load_node_facts(tmp_path) == {}
    save_node_facts(tmp_path, {"a": "systemd-nspawn", "b": "lxc"}, ["a", "b"])
    save_node_facts(tmp_path, {}, ["b"])  # b was re-checked and is a machine now
    assert load_node_facts(tmp_path) == {"a": "systemd-nspawn"}
    assert containers_from_facts({"x": {"kubeplay fact: container": "none"}, "y": {}}) == {}


@pytest.mark.slow
def test_preflight_records_whether_each_node_is_a_container(tmp_path: Path) -> None:
    """The real preflight playbook on localhost: systemd-detect-virt's answer lands in nodes.json."""
    if shutil.which("systemd-detect-virt") is None:
        pytest.skip("systemd-detect-virt is not installed")
    import io

    from rich.console import Console

    from kubeplay.console import Output
    from kubeplay.deploy.inventory import parse_inventory
    from kubeplay.deploy.runner import Workspace, write_inventory
    from kubeplay.deploy.steps import check_access

    answer = subprocess.run(
        ["systemd-detect-virt", "--container"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    inv = parse_inventory(
        {
            "all": {
                "hosts": {"here": {"ansible_host": "127.0.0.1", "ansible_connection": "local"}},
                "vars": {"ansible_python_interpreter": sys.executable},
                "children": {"kube_node": {"hosts": {"here": None}}},
            }
        }
    )
    ws = Workspace(tmp_path / "state")
    write_inventory(ws, inv, {})
    check_access(ws, inv, tmp_path, Output(console=Console(file=io.StringIO())))
    expected = {} if answer in ("", "none") else {"here": answer}
    assert load_node_facts(ws.root) == expected


@pytest.mark.slow
def test_deploy_stops_at_a_container_limit_with_an_event(tmp_path: Path) -> None:
    """deploy() on a kubespray-shaped tree whose preinstall fails like a container's sysctl does."""
    import yaml
    from tests.unit.test_deploy_steps import fake_kubespray, make_context

    from kubeplay.deploy.steps import NODE_PREP, deploy
    from kubeplay.state import Ledger, input_hash

    ks = fake_kubespray(tmp_path)
    failing = {
        "name": "Enable ip forwarding",
        "ansible.builtin.shell": "echo 'sysctl: permission denied on key \"net.ipv4.ip_forward\"' >&2; exit 255",
    }
    (ks / "roles" / "kubernetes" / "preinstall" / "tasks" / "main.yml").write_text(yaml.safe_dump([failing]))
    ctx = make_context(tmp_path, ks)
    events: list[dict[str, object]] = []
    ctx.out.json_events = True
    ctx.out.event = lambda kind, **data: events.append({"event": kind, **data})  # type: ignore[method-assign]
    Ledger(ctx.ws.ledger).mark_done(NODE_PREP, input_hash({"step": NODE_PREP, "inputs": ctx.inputs_digest}))
    save_node_facts(ctx.ws.root, {"node1": "systemd-nspawn"}, ["node1"])
    with pytest.raises(DeployStopped) as info:
        deploy(ctx, preflight=False)
    assert info.value.reason.step == "preinstall" and info.value.reason.limit is not None
    assert "stopped at preinstall: node1 is a systemd-nspawn container: kernel parameters" in info.value.message
    stopped = [e for e in events if e.get("event") == "step" and e.get("status") == "failed"]
    assert len(stopped) == 1 and stopped[0]["step"] == "preinstall" and stopped[0]["task"] == "Enable ip forwarding"
    assert stopped[0]["command"] == "deploy" and stopped[0]["container"] == "systemd-nspawn"
    assert stopped[0]["log"] == str(info.value.log) and stopped[0]["error"] == info.value.message
