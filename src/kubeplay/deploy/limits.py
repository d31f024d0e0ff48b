"""Why a step stopped: the failing task and host, and — when the node is a container — what it cannot do.

kubespray assumes a whole machine: it loads kernel modules, sets kernel parameters, turns swap off and
mounts file systems. A container (systemd-nspawn, LXC, Docker) shares its host's kernel and may do none
of that, so such a task fails there however often it is retried. Preflight records which nodes are
containers (`systemd-detect-virt --container`); a failure on one of them is matched against the kernel
facilities below, and the stop says so instead of leaving the operator with a bare task error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from kubeplay.deploy.progress import Failure
from kubeplay.deploy.runner import RunResult, raise_for_result
from kubeplay.errors import DeployStopped
from kubeplay.state import atomic_write

NODE_FACTS = "nodes.json"
CONTAINER_FACT = "kubeplay fact: container"

# (pattern in the failing task's name or message, what a container cannot do), first match wins.
CONTAINER_LIMITS: tuple[tuple[str, str], ...] = (
    (
        r"modprobe|kernel module|/lib/modules|modules\.dep|\bmodule \S+ not found",
        "kernel modules: a container shares its host's kernel and may not load modules into it",
    ),
    (
        r"sysctl|/proc/sys|read-only file system",
        "kernel parameters (sysctl): outside its own network namespace a container's /proc/sys is read-only",
    ),
    (r"swapoff|swap", "swap: a container cannot turn its host's swap off"),
    (r"cgroup", "cgroups: the container has no delegated cgroup controllers for a container runtime"),
    (r"\bmount\b|operation not permitted", "a privileged kernel operation the container is not allowed"),
)


@dataclass(frozen=True)
class StopReason:
    """Where a step stopped and why, in the words printed to the operator."""

    step: str
    host: str
    task: str
    message: str
    container: str | None  # e.g. "systemd-nspawn", when the host is a container
    limit: str | None  # what a container cannot do, when the failure is one of those


def container_limit(task: str, message: str, action: str = "") -> str | None:
    """What a container cannot do that this failed task needed, or None if the failure looks ordinary."""
    text = f"{action}\n{task}\n{message}"
    for pattern, limit in CONTAINER_LIMITS:
        if re.search(pattern, text, re.IGNORECASE):
            return limit
    return None


def containers_from_facts(facts: dict[str, dict[str, str]]) -> dict[str, str]:
    """host -> container kind, from preflight's `systemd-detect-virt --container` results."""
    kinds: dict[str, str] = {}
    for host, found in facts.items():
        kind = found.get(CONTAINER_FACT, "").strip()
        if kind and kind != "none":
            kinds[host] = kind
    return kinds


def save_node_facts(state_root: Path, containers: dict[str, str], hosts: list[str]) -> None:
    """Remember which of `hosts` are containers (merged with what earlier preflights found)."""
    path = state_root / NODE_FACTS
    known = load_node_facts(state_root)
    for host in hosts:
        known.pop(host, None)
    known.update(containers)
    atomic_write(path, json.dumps(known, indent=2, sort_keys=True).encode())


def load_node_facts(state_root: Path) -> dict[str, str]:
    """host -> container kind as recorded by preflight; empty if no preflight ran yet."""
    try:
        data = json.loads((state_root / NODE_FACTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def stop_reason(step: str, failure: Failure, containers: dict[str, str]) -> StopReason:
    kind = containers.get(failure.host)
    limit = container_limit(failure.task, failure.message, failure.action) if kind and not failure.unreachable else None
    return StopReason(step, failure.host, failure.task, failure.message, kind, limit)


def stop_summary(reason: StopReason) -> str:
    """One line: `stopped at STEP: HOST (a KIND container) cannot ...` or `stopped at STEP: TASK failed on HOST`."""
    if reason.container and reason.limit:
        return f"stopped at {reason.step}: {reason.host} is a {reason.container} container: {reason.limit}"
    return f"stopped at {reason.step}: task '{reason.task}' failed on {reason.host}"


def raise_for_step(result: RunResult, state_root: Path, hint: str | None = None) -> None:
    """Nothing if the run succeeded; else DeployStopped naming task, host, log and any container limit."""
    if result.rc == 0 and result.status == "successful":
        return
    if not result.failures:
        raise_for_result(result, hint)  # a timeout, or Ansible's own ERROR! before any task
    first = result.failures[0]
    reason = stop_reason(result.label, first, load_node_facts(state_root))
    kind = "unreachable" if first.unreachable else "failed"
    lines = [f"{result.label}: task '{first.task}' {kind} on {first.host}: {first.message}"]
    others = sorted({f.host for f in result.failures} - {first.host})
    if others:
        lines[0] += f" (also failed on {', '.join(others)})"
    if reason.limit:
        lines.append(f"{stop_summary(reason)}; kubespray needs a VM or bare-metal node from this step on")
    raise DeployStopped(
        "\n  ".join(lines),
        hint=(hint + "; " if hint else "") + f"full log: {result.log}",
        reason=reason,
        log=result.log,
    )
