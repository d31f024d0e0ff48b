"""Reading `kubeplay --json-events deploy` output: which steps ran and how long, where it stopped, and why a
systemd-nspawn container could not go further."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

# Steps a lab node (systemd-nspawn container) must complete; a stop in one of these is a failure. From
# preinstall on, kubespray touches the kernel (sysctl, modules, swap): a stop there is expected when, and
# only when, the failing task hits such a container limit (see explain_stop).
CONTAINER_STEPS = ("preflight", "node-prep", "os-bootstrap")
# Failures that say nothing about the bundle or kubespray and go away when the step runs again.
TRANSIENT = r"Failed to activate service|timed out \(service_start_timeout|status=219/CGROUP|Timeout \(12s\) waiting for privilege"

# (pattern in the failing task's message, why a container cannot do it) — first match wins.
_REASONS: tuple[tuple[str, str], ...] = (
    (
        r"modprobe|kernel module|/lib/modules|modules\.dep|br_netfilter|overlay module|ip_vs",
        "kernel modules: a container shares the host's kernel and may not load modules into it",
    ),
    (
        r"/proc/sys|sysctl|net\.ipv4|net\.bridge|read-only file system",
        "kernel parameters: /proc/sys is read-only inside an nspawn container",
    ),
    (r"swapoff|swap", "swap: a container cannot switch the host's swap off"),
    (
        r"kubeplay lab stand-in|stand-in|Failed to start|failed to start|start request repeated|exited with",
        "the runtime binaries: the simulated upstream serves stand-in scripts, not real containerd/kubelet "
        "binaries (and a real kubelet would need kernel modules and cgroup control a container does not get)",
    ),
    (r"cgroup", "cgroups: the container has no delegated cgroup controllers for a container runtime"),
    (r"mount|Operation not permitted|permission denied", "a privileged operation the container is not allowed"),
)


_EXPLAINED = re.compile(r"^\s*stopped at (\S+): (.*\bcontainer\b.*)$")


@dataclass
class DeployOutcome:
    """Steps done (name -> seconds), the step that stopped (if any) and the error text."""

    done: dict[str, float] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    stopped_at: str | None = None
    message: str = ""
    explained: str = ""  # kubeplay deploy's own reason when it found the node to be a container

    @property
    def completed(self) -> bool:
        return self.stopped_at is None


def parse_deploy_output(text: str, exit_code: int, command: str = "deploy") -> DeployOutcome:
    """DeployOutcome from the merged stdout/stderr of `kubeplay --json-events deploy` (or `upgrade`)."""
    outcome = DeployOutcome()
    failed: str | None = None
    errors: list[str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith('{"event"'):
            try:
                event = json.loads(stripped)
            except ValueError:
                continue
            if event.get("event") == "step" and event.get("command") == command:  # README: Events
                name = str(event.get("step"))
                if event.get("status") == "started":
                    outcome.started.append(name)
                elif event.get("status") == "done":
                    outcome.done[name] = float(event.get("seconds", 0.0))
                elif event.get("status") in ("failed", "interrupted"):
                    failed = name
                    outcome.message = str(event.get("error", ""))
        elif stripped.startswith("error:"):
            # The error may wrap over several lines; it runs until the hint or the end.
            block = [stripped.removeprefix("error:").strip()]
            for follow in lines[i + 1 :]:
                said = _EXPLAINED.match(follow)
                if said:
                    outcome.explained = said.group(2).strip()
                if said or follow.startswith(("hint:", "{")):
                    break
                block.append(follow.strip())
            errors.append(" ".join(b for b in block if b))
    if exit_code != 0:
        # The error line as printed (its last line is the stop summary), else the failed step's event.
        outcome.message = errors[-1] if errors else outcome.message or f"kubeplay {command} exited with {exit_code}"
        pending = [s for s in outcome.started if s not in outcome.done]
        head = outcome.message.split(":", 1)[0].strip()
        outcome.stopped_at = failed or (pending[-1] if pending else (head if head and " " not in head else "preflight"))
    return outcome


def explain_stop(message: str) -> str | None:
    """Why a container cannot do what the failing task asked, in one line; None if the message shows no
    container limit (then the stop is a real failure)."""
    for pattern, reason in _REASONS:
        if re.search(pattern, message, re.I):
            return reason
    return None


def is_transient(message: str) -> bool:
    """A failure a plain re-run (kubeplay deploy resumes at the failed step) is expected to get past."""
    return re.search(TRANSIENT, message) is not None
