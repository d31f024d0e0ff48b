"""Day 2: add nodes, remove nodes, reset the cluster — kubespray's own playbooks, run unattended.

Every command rebuilds the inventory from config.yaml first (never a stale copy), and runs the preflight
on the hosts it will touch before anything changes. Each is a short list of steps run by kubeplay.steps
(no ledger: every step runs), so its lines and JSON events are those of install and deploy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubeplay.deploy.context import DeployContext
from kubeplay.deploy.record import record_path
from kubeplay.deploy.runner import Playbook, write_inventory
from kubeplay.deploy.steps import NODE_PREP, kubeplay_playbook, node_prep_playbook, play, preflight_step, stop_fields
from kubeplay.errors import BadInput
from kubeplay.state import Ledger
from kubeplay.steps import Step, StepRunner

CONTROL_GROUPS = ("kube_control_plane", "etcd")
CONTROL_PLANE_STEP = "control-plane"


@dataclass(frozen=True)
class Day2Outcome:
    action: str
    hosts: list[str]
    seconds: float


def _kubespray_playbook(
    ctx: DeployContext,
    label: str,
    name: str,
    limit: str | None = None,
    extravars: dict[str, Any] | None = None,
    skip_tags: str | None = None,
) -> Playbook:
    path = ctx.kubespray_dir / name
    if not path.is_file():
        path = ctx.kubespray_dir / "playbooks" / name.replace("-", "_")
    return Playbook(
        label,
        path,
        ctx.kubespray_dir,
        extravars=extravars or {},
        limit=limit,
        skip_tags=skip_tags,
        kubespray_dir=ctx.kubespray_dir,
    )


def cluster_formed(ctx: DeployContext) -> bool:
    """Whether a deploy from this state directory ever got the control plane up (so nodes may have joined)."""
    return CONTROL_PLANE_STEP in Ledger(ctx.ws.ledger).steps


UNDO_NODE_PREP = "node-prep-undo"


def _undo_node_prep(limit: str | None = None) -> Step[DeployContext]:
    def run(ctx: DeployContext) -> str:
        return play(ctx, kubeplay_playbook(ctx, UNDO_NODE_PREP, limit), hint="run the same command again")

    return Step(
        UNDO_NODE_PREP, "undo kubeplay's node prep: own apt/yum sources, CA, hosts, chrony back", run, own_progress=True
    )


def _run(ctx: DeployContext, command: str, steps: list[Step[DeployContext]], hosts: list[str]) -> Day2Outcome:
    results = StepRunner(command, steps, ctx.out, details=stop_fields).run(ctx)
    return Day2Outcome(command, hosts, sum(r.seconds for r in results))


def add_nodes(ctx: DeployContext, names: list[str], preflight: bool = True) -> Day2Outcome:
    """Prep the new worker nodes and join them with kubespray's scale.yml --limit."""
    ctx.inventory.subset(names)
    control = [n for n in names if any(n in ctx.inventory.members(g) for g in CONTROL_GROUPS)]
    if control:
        raise BadInput(
            f"add-node: {', '.join(control)} is in kube_control_plane or etcd; scale.yml only adds workers",
            hint="kubespray adds control plane and etcd members with cluster.yml: run `kubeplay deploy --from node-prep`",
        )
    write_inventory(ctx.ws, ctx.inventory, ctx.group_vars)
    limit = ",".join(names)
    facts = _kubespray_playbook(ctx, "facts", "playbooks/facts.yml")
    scale = _kubespray_playbook(ctx, "scale", "scale.yml", limit=limit)
    steps = (
        [preflight_step(limit, f"SSH to {', '.join(names)}; finish any interrupted package install")]
        if preflight
        else []
    )
    steps += [
        Step(
            NODE_PREP,
            f"kubeplay node prep on {', '.join(names)}",
            lambda c: play(c, node_prep_playbook(c, limit), hint="fix the node and run add-node again"),
            own_progress=True,
        ),
        # kubespray's documented order: facts for every node first, then scale.yml limited to the new ones.
        Step(
            "facts",
            "kubespray facts.yml on every node",
            lambda c: play(c, facts, hint="every node must be reachable for facts; run add-node again"),
            own_progress=True,
        ),
        Step(
            "scale",
            f"kubespray scale.yml --limit {limit}",
            lambda c: play(c, scale, hint="run add-node again; kubespray's scale.yml is idempotent"),
            own_progress=True,
        ),
    ]
    return _run(ctx, "add-node", steps, names)


def remove_nodes(ctx: DeployContext, names: list[str], unreachable: bool = False) -> Day2Outcome:
    """kubespray's remove-node.yml for `names`, unattended; then node prep undone on them (when reachable).

    When no deploy from this state directory ever got the control plane up, no node can have joined: there
    is nothing to drain or delete, so kubespray's pre-remove and post-remove roles (which need kubectl on
    the control plane) are skipped and the nodes are only reset.
    """
    ctx.inventory.subset(names)
    write_inventory(ctx.ws, ctx.inventory, ctx.group_vars)
    extravars: dict[str, Any] = {"node": ",".join(names), "skip_confirmation": True}
    if unreachable:
        extravars.update(reset_nodes=False, allow_ungraceful_removal=True)
    skip = None
    if not cluster_formed(ctx):
        skip = "pre-remove,post-remove"
        ctx.out.info(
            f"no control plane was deployed from {ctx.ws.root}: nothing to drain; resetting {', '.join(names)}"
        )
    pb = _kubespray_playbook(ctx, "remove-node", "remove-node.yml", extravars=extravars, skip_tags=skip)
    hint = "if the node is gone for good, run remove-node again with --unreachable"
    steps: list[Step[DeployContext]] = [
        Step(
            "remove-node",
            f"kubespray remove-node.yml for {', '.join(names)}",
            lambda c: play(c, pb, hint),
            own_progress=True,
        )
    ]
    if not unreachable:
        steps.append(_undo_node_prep(",".join(names)))
    return _run(ctx, "remove-node", steps, names)


def reset_cluster(ctx: DeployContext, keep_node_prep: bool = False, node_prep_only: bool = False) -> Day2Outcome:
    """kubespray's reset.yml on every node, unattended, then node prep undone; the deploy and upgrade ledgers
    and the cluster record of this state directory are cleared.

    `node_prep_only` skips reset.yml: for nodes kubespray never reached, or already reset some other way.
    """
    if keep_node_prep and node_prep_only:
        raise BadInput("--keep-node-prep and --node-prep-only together would do nothing")
    write_inventory(ctx.ws, ctx.inventory, ctx.group_vars)
    steps: list[Step[DeployContext]] = []
    if not node_prep_only:
        extravars = {"skip_confirmation": True, "reset_confirmation": True}
        pb = _kubespray_playbook(ctx, "reset", "reset.yml", extravars=extravars)
        hint = "run reset again; kubespray's reset.yml is idempotent"
        steps.append(Step("reset", "kubespray reset.yml on every node", lambda c: play(c, pb, hint), own_progress=True))
    if not keep_node_prep:
        steps.append(_undo_node_prep())
    outcome = _run(ctx, "reset", steps, list(ctx.inventory.hosts))
    # The cluster is gone: its ledgers and its record (what it ran) go with it; other state dirs are untouched.
    ctx.ws.ledger.unlink(missing_ok=True)
    for ledger in ctx.ws.root.glob("ledger-upgrade-*.json"):
        ledger.unlink(missing_ok=True)
    record_path(ctx.ws.root).unlink(missing_ok=True)
    return outcome
