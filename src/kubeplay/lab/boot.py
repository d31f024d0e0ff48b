"""Booting lab nodes and switching them off and on again, by the PIDs the lab recorded.

Every function works from the LabRecord alone (as saved in the state file), so a node powered on by one
process can be powered off, or brought down, by another. Only a recorded (PID, start time) pair is ever
signalled, and only while /proc still shows that very process; nothing is looked up by name.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from kubeplay.errors import BadInput, LabError
from kubeplay.lab import machines, network, record, ssh
from kubeplay.lab.record import LabRecord, NodeRecord, Resource

BOOT_TIMEOUT = 120.0

Popens = dict[int, subprocess.Popen[bytes]]


def start_machine(rec: LabRecord, node: NodeRecord, res: Resource, popens: Popens) -> None:
    """Start `node`'s systemd-nspawn with the lab's recorded options and env; put its PID into `res`."""
    argv = machines.nspawn_argv(Path(node.root), node.machine, node.netns, tuple(rec.nspawn_args))
    started = machines.start(argv, Path(node.log), env=rec.nspawn_env)
    popens[started.pid] = started.popen  # reaped by whoever stops it in this process
    res.pid, res.start_time = started.pid, started.start_time


def is_running(res: Resource | None) -> bool:
    """Whether the recorded process is alive and still the one the lab started."""
    return res is not None and res.pid is not None and machines.is_running(res.pid, res.start_time or 0)


def wait_ready(rec: LabRecord, nodes: list[NodeRecord], timeout: float) -> None:
    """Return once every node in `nodes` accepts ssh; LabError (with its log) if one stops or time runs out."""
    options = ssh.ssh_options(Path(rec.key), Path(rec.known_hosts))
    deadline = time.monotonic() + timeout
    waiting = {n.name: n for n in nodes}
    while waiting:
        for name, node in list(waiting.items()):
            if not is_running(rec.process(node.machine)):
                raise LabError(
                    f"lab node {name} stopped while booting; last lines of {node.log}:\n"
                    + machines.log_tail(Path(node.log))
                )
            argv = ssh.ssh_argv(rec.netns, options, node.ip, "true")
            if subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False).returncode == 0:
                del waiting[name]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise LabError(
                f"lab nodes {', '.join(waiting)} did not accept ssh within {timeout:.0f}s",
                hint=f"see {', '.join(n.log for n in waiting.values())}",
            )
        time.sleep(0.2)


def _node_process(rec: LabRecord, name: str) -> tuple[NodeRecord, Resource]:
    node = next((n for n in rec.nodes if n.name == name), None)
    if node is None:
        raise BadInput(f"lab {rec.name} has no node {name!r}", hint=f"nodes: {', '.join(n.name for n in rec.nodes)}")
    res = rec.process(node.machine)
    if res is None:
        raise LabError(f"lab {rec.name}: node {name} was never started", hint="bring the lab down and up again")
    return node, res


def power_off(rec: LabRecord, name: str, popens: Popens, cut: bool = False) -> None:
    """Stop node `name` (clean halt, or with cut=True SIGKILL its init as a power cut would); disk stays.

    Raises BadInput if it is not running, LabError if it does not stop.
    """
    node, res = _node_process(rec, name)
    if not is_running(res) or res.pid is None:
        raise BadInput(
            f"lab {rec.name}: node {name} is already powered off (stopped)",
            hint=f"`kubeplay lab power-on {name} --name {rec.name}` boots it again",
        )
    pid, start_time = res.pid, res.start_time or 0
    still = machines.cut_power(pid, start_time, popens) if cut else machines.stop([(pid, start_time)], popens)
    if still:
        raise LabError(f"lab {rec.name}: node {name} (systemd-nspawn PID {pid}) did not stop", hint=f"see {node.log}")


def power_on(rec: LabRecord, name: str, popens: Popens, timeout: float = BOOT_TIMEOUT) -> None:
    """Boot node `name` again from its disk, record its new PID (state file saved), wait until sshd answers.

    Raises BadInput if it is already running, LabError if it stops while booting or sshd does not answer.
    """
    node, res = _node_process(rec, name)
    if is_running(res):
        raise BadInput(
            f"lab {rec.name}: node {name} is already running (PID {res.pid})",
            hint=f"`kubeplay lab power-off {name} --name {rec.name}` first",
        )
    if not network.netns_exists(node.netns):
        raise LabError(
            f"lab {rec.name}: network namespace {node.netns} of node {name} is gone",
            hint=f"`kubeplay lab down --name {rec.name}`, then up again",
        )
    start_machine(rec, node, res, popens)
    record.save(rec)
    wait_ready(rec, [node], timeout)
