"""The deploy steps and their ledger: preflight, node-prep, then kubespray's cluster.yml phase by phase.

A step whose recorded input hash matches is skipped; a failed step stays open, so running the same
command again resumes there. `--from STEP` forgets STEP and everything after it; `--only STEP` runs just
that step; `--to STEP` stops after it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from kubeplay.console import Output
from kubeplay.deploy.context import NODE_GROUPS, DeployContext
from kubeplay.deploy.inventory import ClusterInventory
from kubeplay.deploy.limits import DeployStopped, containers_from_facts, raise_for_step, save_node_facts
from kubeplay.deploy.phases import Phase, kubespray_phases, write_phase_playbook
from kubeplay.deploy.progress import Failure
from kubeplay.deploy.runner import Playbook, RunResult, Workspace, raise_for_result, run_playbook, write_inventory
from kubeplay.errors import BadInput, StepFailed
from kubeplay.state import Ledger, atomic_write, input_hash

PLAYBOOKS = Path(__file__).parent / "playbooks"
NODE_PREP = "node-prep"


@dataclass(frozen=True)
class Step:
    name: str
    description: str
    phase: Phase | None = None


@dataclass(frozen=True)
class StepOutcome:
    name: str
    ran: bool
    seconds: float


def deploy_steps(kubespray_dir: Path) -> list[Step]:
    """node-prep, then every phase of kubespray's cluster.yml, in order."""
    steps = [Step(NODE_PREP, "kubeplay node prep: bundle repo, CA, /etc/hosts, chrony, firewall")]
    steps += [Step(p.name, p.description, p) for p in kubespray_phases(kubespray_dir)]
    return steps


def select_steps(
    order: list[str],
    done: set[str],
    from_step: str | None = None,
    only: str | None = None,
    to_step: str | None = None,
) -> list[tuple[str, bool]]:
    """(step, run it?) for each step in scope; raise BadInput for an unknown step name."""
    for option, value in (("--from", from_step), ("--only", only), ("--to", to_step)):
        if value is not None and value not in order:
            raise BadInput(f"{option} {value}: no such step", hint=f"steps: {', '.join(order)}")
    if only is not None:
        return [(only, True)]
    start = order.index(from_step) if from_step else 0
    end = order.index(to_step) + 1 if to_step else len(order)
    if end <= start:
        raise BadInput(f"--to {to_step} comes before --from {from_step}", hint=f"steps: {', '.join(order)}")
    plan: list[tuple[str, bool]] = []
    for i, name in enumerate(order[:end]):
        plan.append((name, i >= start and (from_step is not None or name not in done)))
    return plan


def describe_failure(f: Failure) -> str:
    """One line naming the host and what went wrong, with the variable to check; never the secret itself."""
    text = f.message
    lowered = text.lower()
    if "incorrect password" in lowered or "invalid/incorrect password" in lowered:
        why = "wrong SSH password (check ansible_ssh_pass for this host)"
    elif "permission denied (publickey" in lowered or "permission denied, please try again" in lowered:
        why = "SSH login refused (check ansible_user and ansible_ssh_private_key_file or ansible_ssh_pass)"
    elif "sudo password" in lowered or "incorrect su password" in lowered or "become" in lowered:
        why = "privilege escalation failed (check ansible_become_pass / sudo rights for ansible_user)"
    elif "sshpass" in lowered:
        why = "password login needs the sshpass program on the deploy node"
    elif f.unreachable:
        why = "unreachable over SSH"
    elif "python" in lowered and ("not found" in lowered or "no such file" in lowered):
        why = "no Python on the node (Ansible needs python3 there)"
    else:
        why = f"{f.task} failed"
    return f"{f.host}: {why}: {text}"


def run_preflight(ctx: DeployContext, limit: str | None = None) -> RunResult:
    """Connect to every target once (StepFailed naming each unreachable or refused host), then finish any
    package install a node was interrupted in (node-repair.yml)."""
    write_inventory(ctx.ws, ctx.inventory, ctx.group_vars)
    result = check_access(ctx.ws, ctx.inventory, ctx.kubespray_dir, ctx.out, limit)
    repaired = run_playbook(ctx.ws, ctx.inventory, kubeplay_playbook(ctx, "node-repair", limit), ctx.out)
    raise_for_step(repaired, ctx.ws.root, hint="finish the package install on that node by hand, then run again")
    result.seconds += repaired.seconds
    return result


def check_access(
    ws: Workspace, inventory: ClusterInventory, project_dir: Path, out: Output, limit: str | None = None
) -> RunResult:
    """Run preflight.yml against the written inventory; raise StepFailed listing every host that failed it."""
    pb = Playbook(
        "preflight",
        PLAYBOOKS / "preflight.yml",
        project_dir,
        extravars={"kubeplay_targets": NODE_GROUPS},
        limit=limit,
        kubespray_dir=project_dir,
        connect_timeout=15,
        attempts=1,
        timeout=600,
    )
    result = run_playbook(ws, inventory, pb, out)
    save_node_facts(ws.root, containers_from_facts(result.facts), list(result.hosts))
    if result.failures:
        hosts = sorted({f.host for f in result.failures})
        lines = sorted({describe_failure(f) for f in result.failures})
        raise StepFailed(
            f"preflight: cannot work on {', '.join(hosts)}:\n  " + "\n  ".join(lines),
            hint=f"nothing was changed on any host; fix access and run again (full log: {result.log})",
        )
    raise_for_result(result)
    return result


def kubeplay_playbook(ctx: DeployContext, name: str, limit: str | None = None, **extravars: str) -> Playbook:
    """One of kubeplay's own playbooks (deploy/playbooks/<name>.yml) against the node groups, from kubespray's
    directory (its ansible.cfg and collections)."""
    return Playbook(
        name,
        PLAYBOOKS / f"{name}.yml",
        ctx.kubespray_dir,
        extravars={"kubeplay_targets": NODE_GROUPS, **extravars},
        limit=limit,
        kubespray_dir=ctx.kubespray_dir,
    )


def node_prep_playbook(ctx: DeployContext, limit: str | None = None) -> Playbook:
    return kubeplay_playbook(ctx, NODE_PREP, limit, kubeplay_prep_digest=ctx.inputs_digest)


def phase_playbook(ctx: DeployContext, phase: Phase, limit: str | None = None) -> Playbook:
    path = write_phase_playbook(ctx.kubespray_dir, phase, ctx.ws.playbooks)
    return Playbook(phase.name, path, ctx.kubespray_dir, limit=limit, kubespray_dir=ctx.kubespray_dir)


def run_step(ctx: DeployContext, step: Step, limit: str | None = None) -> RunResult:
    pb = phase_playbook(ctx, step.phase, limit) if step.phase else node_prep_playbook(ctx, limit)
    result = run_playbook(ctx.ws, ctx.inventory, pb, ctx.out)
    raise_for_step(result, ctx.ws.root, hint=f"run the same command again to resume at {step.name}")
    return result


def record_timing(ctx: DeployContext, name: str, seconds: float) -> None:
    path = ctx.ws.root / "timings.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data[name] = round(seconds, 1)
    atomic_write(path, json.dumps(data, indent=2).encode())


def deploy(
    ctx: DeployContext,
    from_step: str | None = None,
    only: str | None = None,
    to_step: str | None = None,
    preflight: bool = True,
) -> list[StepOutcome]:
    """Run the deploy steps that are not done yet; raise StepFailed at the first failing one."""
    steps = deploy_steps(ctx.kubespray_dir)
    order = [s.name for s in steps]
    ledger = Ledger(ctx.ws.ledger)
    digests = {name: input_hash({"step": name, "inputs": ctx.inputs_digest}) for name in order}
    done = {name for name in order if ledger.is_done(name, digests[name])}
    plan = select_steps(order, done, from_step, only, to_step)
    write_inventory(ctx.ws, ctx.inventory, ctx.group_vars)
    if from_step:
        ledger.forget_from(order, from_step)
    if preflight and any(run for _, run in plan):
        run_preflight(ctx)
    by_name = {s.name: s for s in steps}
    outcomes: list[StepOutcome] = []
    for name, run in plan:
        if not run:
            ctx.out.info(f"[dim]{name}: done earlier, inputs unchanged[/]")
            outcomes.append(StepOutcome(name, False, 0.0))
            continue
        ctx.out.event("step", step=name, status="started")
        started = time.monotonic()
        ledger.forget(name)
        try:
            run_step(ctx, by_name[name])
        except DeployStopped as stop:
            r = stop.reason
            ctx.out.event(
                "step", step=name, status="stopped", host=r.host, task=r.task, container=r.container,
                limit=r.limit, message=r.message, log=str(stop.log),
            )  # fmt: skip
            raise
        except StepFailed:
            ctx.out.event("step", step=name, status="failed")
            raise
        seconds = time.monotonic() - started
        ledger.mark_done(name, digests[name])
        record_timing(ctx, name, seconds)
        ctx.out.event("step", step=name, status="done", seconds=round(seconds, 1))
        outcomes.append(StepOutcome(name, True, seconds))
    return outcomes
