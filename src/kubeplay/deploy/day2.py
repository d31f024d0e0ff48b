"""Day 2: add nodes, remove nodes, reset the cluster — kubespray's own playbooks, run unattended.

Every command rebuilds the inventory from config.yaml first (never a stale copy), and runs the preflight
on the hosts it will touch before anything changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubeplay.deploy.context import DeployContext
from kubeplay.deploy.limits import raise_for_step
from kubeplay.deploy.runner import Playbook, run_playbook, write_inventory
from kubeplay.deploy.steps import kubeplay_playbook, node_prep_playbook, run_preflight
from kubeplay.errors import BadInput
from kubeplay.state import Ledger

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


def _undo_node_prep(ctx: DeployContext, limit: str | None = None) -> float:
    undone = run_playbook(ctx.ws, ctx.inventory, kubeplay_playbook(ctx, "node-prep-undo", limit), ctx.out)
    raise_for_step(undone, ctx.ws.root, hint="run the same command again")
    return undone.seconds


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
    seconds = 0.0
    if preflight:
        seconds += run_preflight(ctx, limit=limit).seconds
    prep = run_playbook(ctx.ws, ctx.inventory, node_prep_playbook(ctx, limit), ctx.out)
    raise_for_step(prep, ctx.ws.root, hint="fix the node and run add-node again")
    # kubespray's documented order: facts for every node first, then scale.yml limited to the new ones.
    facts = run_playbook(ctx.ws, ctx.inventory, _kubespray_playbook(ctx, "facts", "playbooks/facts.yml"), ctx.out)
    raise_for_step(facts, ctx.ws.root, hint="every node must be reachable for facts; run add-node again")
    scale = run_playbook(ctx.ws, ctx.inventory, _kubespray_playbook(ctx, "scale", "scale.yml", limit=limit), ctx.out)
    raise_for_step(scale, ctx.ws.root, hint="run add-node again; kubespray's scale.yml is idempotent")
    return Day2Outcome("add-node", names, seconds + prep.seconds + facts.seconds + scale.seconds)


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
    result = run_playbook(ctx.ws, ctx.inventory, pb, ctx.out)
    raise_for_step(result, ctx.ws.root, hint="if the node is gone for good, run remove-node again with --unreachable")
    seconds = result.seconds
    if not unreachable:
        seconds += _undo_node_prep(ctx, ",".join(names))
    return Day2Outcome("remove-node", names, seconds)


def reset_cluster(ctx: DeployContext, keep_node_prep: bool = False, node_prep_only: bool = False) -> Day2Outcome:
    """kubespray's reset.yml on every node, unattended, then node prep undone; the deploy ledger is cleared.

    `node_prep_only` skips reset.yml: for nodes kubespray never reached, or already reset some other way.
    """
    if keep_node_prep and node_prep_only:
        raise BadInput("--keep-node-prep and --node-prep-only together would do nothing")
    write_inventory(ctx.ws, ctx.inventory, ctx.group_vars)
    seconds = 0.0
    if not node_prep_only:
        extravars = {"skip_confirmation": True, "reset_confirmation": True}
        pb = _kubespray_playbook(ctx, "reset", "reset.yml", extravars=extravars)
        result = run_playbook(ctx.ws, ctx.inventory, pb, ctx.out)
        raise_for_step(result, ctx.ws.root, hint="run reset again; kubespray's reset.yml is idempotent")
        seconds += result.seconds
    if not keep_node_prep:
        seconds += _undo_node_prep(ctx)
    ctx.ws.ledger.unlink(missing_ok=True)
    return Day2Outcome("reset", list(ctx.inventory.hosts), seconds)
