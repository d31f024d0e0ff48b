"""The deploy steps: preflight, node-prep, then kubespray's cluster.yml phase by phase, run by kubeplay.steps.

A step whose recorded input hash matches is skipped; a failed step stays open, so running the same
command again resumes there. `--from STEP` forgets STEP and everything after it; `--only STEP` runs just
that step; `--to STEP` stops after it. Preflight is a check: it runs before the first step with work.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from kubeplay.console import Output
from kubeplay.deploy.context import NODE_GROUPS, DeployContext
from kubeplay.deploy.inventory import ClusterInventory
from kubeplay.deploy.limits import containers_from_facts, raise_for_step, save_node_facts
from kubeplay.deploy.phases import Phase, kubespray_phases, write_phase_playbook
from kubeplay.deploy.progress import Failure
from kubeplay.deploy.record import read_record, record_finished, record_started
from kubeplay.deploy.runner import Playbook, RunResult, Workspace, raise_for_result, run_playbook, write_inventory
from kubeplay.errors import DeployStopped, KubeplayError, StepFailed
from kubeplay.state import Ledger, input_hash
from kubeplay.steps import Selection, Step, StepResult, StepRunner

PLAYBOOKS = Path(__file__).parent / "playbooks"
PREFLIGHT = "preflight"
NODE_PREP = "node-prep"
PREFLIGHT_SUMMARY = "SSH to every node; finish any package install a node was interrupted in"


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


def check_nodes(ctx: DeployContext, limit: str | None = None) -> RunResult:
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


def ran(result: RunResult) -> str:
    """What a playbook run did, in one line: hosts and changes."""
    changed = sum(t["changed"] for t in result.hosts.values())
    return f"{len(result.hosts)} host(s), {changed} change(s)"


def play(ctx: DeployContext, pb: Playbook, hint: str) -> str:
    """Run `pb`; raise DeployStopped (or StepFailed) naming host, task and log if it failed; else say what it did."""
    result = run_playbook(ctx.ws, ctx.inventory, pb, ctx.out)
    raise_for_step(result, ctx.ws.root, hint=hint)
    return ran(result)


def preflight_step(limit: str | None = None, summary: str = PREFLIGHT_SUMMARY) -> Step[DeployContext]:
    return Step(PREFLIGHT, summary, lambda ctx: ran(check_nodes(ctx, limit)), check=True, own_progress=True)


def _step_inputs(name: str, ctx: DeployContext) -> str:
    return input_hash({"step": name, "inputs": ctx.inputs_digest})


def _run_node_prep(ctx: DeployContext) -> str:
    return play(ctx, node_prep_playbook(ctx), hint=f"run the same command again to resume at {NODE_PREP}")


def _run_phase(phase: Phase, ctx: DeployContext) -> str:
    return play(ctx, phase_playbook(ctx, phase), hint=f"run the same command again to resume at {phase.name}")


def deploy_steps(kubespray_dir: Path, preflight: bool = True) -> list[Step[DeployContext]]:
    """preflight (unless skipped), node-prep, then every phase of kubespray's cluster.yml, in order."""
    steps = [preflight_step()] if preflight else []
    prep = "kubeplay node prep: bundle repo, CA, /etc/hosts, chrony, firewall"
    steps.append(Step(NODE_PREP, prep, _run_node_prep, partial(_step_inputs, NODE_PREP), own_progress=True))
    for p in kubespray_phases(kubespray_dir):
        steps.append(
            Step(p.name, p.description, partial(_run_phase, p), partial(_step_inputs, p.name), own_progress=True)
        )
    return steps


def stop_fields(exc: KubeplayError) -> dict[str, Any]:
    """A failed deploy step's event fields beyond the error: where it stopped (host, task, container, log)."""
    if not isinstance(exc, DeployStopped):
        return {}
    r = exc.reason
    return {"host": r.host, "task": r.task, "container": r.container, "limit": r.limit, "log": str(exc.log)}


def _start_deploy(ctx: DeployContext) -> None:
    write_inventory(ctx.ws, ctx.inventory, ctx.group_vars)
    record_started(ctx.ws.root, ctx.bundle, "deploy")


def deploy_runner(ctx: DeployContext, preflight: bool = True) -> StepRunner[DeployContext]:
    """The runner of `kubeplay deploy`: its steps, its ledger; before the first step the inventory is written
    and the cluster record (<state-dir>/cluster.json) says which bundle the nodes get."""
    return StepRunner(
        "deploy",
        deploy_steps(ctx.kubespray_dir, preflight),
        ctx.out,
        Ledger(ctx.ws.ledger),
        on_start=partial(_start_deploy, ctx),
        details=stop_fields,
    )


def all_done(runner: StepRunner[Any]) -> bool:
    """Whether the ledger holds every step of `runner` (checks aside)."""
    ledger = Ledger(runner.ledger.path) if runner.ledger is not None else None
    return ledger is not None and all(s.name in ledger.steps for s in runner.steps if not s.check)


def run_deploy(
    ctx: DeployContext, runner: StepRunner[DeployContext], selection: Selection | None = None
) -> list[StepResult]:
    """Run `runner` (deploy_runner); once every step is done, the cluster record says the deploy is complete."""
    results = runner.run(ctx, selection)
    if all_done(runner):
        if read_record(ctx.ws.root) is None:  # deployed before records were kept: record it now
            record_started(ctx.ws.root, ctx.bundle, "deploy")
        record_finished(ctx.ws.root)
    return results


def deploy(ctx: DeployContext, selection: Selection | None = None, preflight: bool = True) -> list[StepResult]:
    """Run the deploy steps that `selection` asks for and are not done; return what each did.

    Raises BadInput for an unknown step name, StepFailed (DeployStopped: on a host) at the first failing step.
    """
    return run_deploy(ctx, deploy_runner(ctx, preflight), selection)
