"""`kubeplay upgrade`: the cluster to another served version with kubespray's own upgrade_cluster.yml.

Before any host is touched, the path is checked (deploy/versions.py: the target is served, one Kubernetes
minor and one kubespray release at a time, never back). Then, as steps of kubeplay.steps with a ledger of
their own (<state-dir>/ledger-upgrade-<version>.json, so a finished deploy is never taken for a finished
upgrade): preflight, node prep again when the OS repos or their key changed between the two versions, and
the phases of the new release's playbooks/upgrade_cluster.yml. The offline variables are generated from the
new version's manifest. kubespray's knobs come from config.yaml's `kubespray:` section; its confirmation
prompt and pause are forced off, since nobody is there to answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from kubeplay.bootstrap.bundleinfo import BundleFacts
from kubeplay.bootstrap.paths import HostPaths
from kubeplay.bootstrap.served import ServedVersion, served_versions
from kubeplay.console import Output
from kubeplay.deploy.context import NODE_GROUPS, DeployContext, build_context
from kubeplay.deploy.phases import Phase, upgrade_phases, write_phase_playbook
from kubeplay.deploy.record import read_record, record_upgrade
from kubeplay.deploy.runner import Playbook, run_playbook, write_inventory
from kubeplay.deploy.steps import (
    NODE_PREP,
    PLAYBOOKS,
    all_done,
    check_nodes,
    node_prep_playbook,
    play,
    ran,
    stop_fields,
)
from kubeplay.deploy.versions import (
    ClusterVersion,
    Version,
    check_upgrade_path,
    current_from_record,
    find_target,
    repos_signature,
)
from kubeplay.errors import KubeplayError
from kubeplay.state import Ledger, input_hash
from kubeplay.steps import Selection, Step, StepResult, StepRunner, check_selection

# kubespray variables an unattended upgrade must have: no prompt before each node, no pause after it.
FORCED_VARS: dict[str, Any] = {"upgrade_node_confirm": False, "upgrade_node_pause_seconds": 0}
# kubespray's upgrade knobs (roles/upgrade/*/defaults, upgrade_cluster.yml's `serial`): from config.yaml's
# `kubespray:` section, passed as extra vars (`serial` is a play keyword: group vars do not reach it).
UPGRADE_KNOBS = (
    "serial",
    "drain_nodes",
    "drain_timeout",
    "drain_grace_period",
    "drain_pod_selector",
    "drain_retries",
    "drain_retry_delay_seconds",
    "drain_fallback_enabled",
    "drain_fallback_grace_period",
    "drain_fallback_timeout",
    "upgrade_node_always_cordon",
    "upgrade_node_uncordon_after_drain_failure",
    "upgrade_node_fail_if_drain_fails",
)
PROBE_FACT = "kubeplay fact: kubelet version"
PROBE_SECONDS = 90
PREFLIGHT = "preflight"


def upgrade_vars(config_vars: dict[str, Any]) -> dict[str, Any]:
    """The extra vars of every upgrade phase: config.yaml's upgrade knobs, then the forced ones on top."""
    knobs = {k: config_vars[k] for k in UPGRADE_KNOBS if config_vars.get(k) is not None}
    return {**knobs, **FORCED_VARS}


def ledger_path(state_dir: Path, version: str) -> Path:
    return state_dir / f"ledger-upgrade-{Version.parse(version) or version}.json"


@dataclass
class UpgradeContext:
    """One upgrade: the cluster (a DeployContext built against the target version), where it stands, where
    it goes, and whether the nodes' OS repos change on the way."""

    deploy: DeployContext
    current: ClusterVersion
    target: ServedVersion
    prep_needed: bool
    extravars: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.target.kube_version

    @property
    def ledger(self) -> Path:
        return ledger_path(self.deploy.ws.root, self.version)


def node_versions(ctx: DeployContext) -> dict[str, Version]:
    """kubelet --version of every reachable node, read over the same SSH path as deploy (bounded; a node
    that cannot be reached or has no kubelet is left out; any failure yields what was read)."""
    pb = Playbook(
        "node-versions",
        PLAYBOOKS / "kube-version.yml",
        ctx.kubespray_dir,
        extravars={"kubeplay_targets": NODE_GROUPS},
        kubespray_dir=ctx.kubespray_dir,
        connect_timeout=10,
        attempts=1,
        timeout=PROBE_SECONDS,
    )
    try:
        write_inventory(ctx.ws, ctx.inventory, ctx.group_vars)
        result = run_playbook(ctx.ws, ctx.inventory, pb, Output(console=ctx.out.console, quiet=True))
    except (KubeplayError, OSError):
        return {}
    found: dict[str, Version] = {}
    for host, facts in result.facts.items():
        words = facts.get(PROBE_FACT, "").split()
        version = Version.parse(words[-1]) if words else None
        if version is not None:
            found[host] = version
    return found


def _same_repos(a: BundleFacts | None, b: BundleFacts) -> bool:
    return a is not None and repos_signature(a) == repos_signature(b)


def prepare_upgrade(
    config: Path,
    to: str,
    *,
    state_dir: Path,
    served: HostPaths,
    out: Output,
    ca_path: Path | None = None,
    selection: Selection | None = None,
    preflight: bool = True,
    probe: bool = True,
) -> UpgradeContext:
    """Check the path, the step selection and build everything the upgrade runs with; BadInput (exit 2)
    before any host is touched when either does not work. With --from or --only in `selection`, the version
    the cluster runs is allowed (a re-run of steps). `probe`: read kubelet --version on the nodes too."""
    selection = selection or Selection()
    rerun = selection.from_step is not None or selection.only is not None
    current = current_from_record(state_dir, config)
    target = find_target(served, to, current)
    record = read_record(state_dir)
    resuming = record is not None and record.upgrading_to == target.kube_version
    if not (rerun and Version.parse(target.kube_version) == current.kube):
        check_upgrade_path(current, target, served_versions(served))
    ctx = build_context(config, target.facts(), state_dir=state_dir, ca_path=ca_path, out=out)
    names = [s.name for s in upgrade_steps(ctx.kubespray_dir, preflight)]
    check_selection("upgrade", names, selection)
    if probe:
        found = node_versions(ctx)
        if found:
            lowest = min(found.values())
            if lowest != current.kube:
                out.info(
                    f"the nodes run Kubernetes {lowest} and up ({len(found)} read); the record says {current.kube}"
                )
            current = ClusterVersion(lowest, current.kubespray, "the nodes (kubelet --version)")
            same = Version.parse(target.kube_version) == lowest
            if not (same and (rerun or resuming)):
                check_upgrade_path(current, target, served_versions(served))
    old = next((v for v in served_versions(served) if record is not None and v.identity == record.bundle), None)
    return UpgradeContext(
        deploy=ctx,
        current=current,
        target=target,
        prep_needed=not _same_repos(old.facts() if old else None, target.facts()),
        extravars=upgrade_vars(ctx.group_vars),
    )


def _inputs(name: str, u: UpgradeContext) -> str:
    return input_hash({"step": name, "inputs": u.deploy.inputs_digest, "upgrade": u.extravars})


def _node_prep(u: UpgradeContext) -> str:
    if not u.prep_needed:
        return f"OS repos and their key unchanged from Kubernetes {u.current.kube}: nothing to do on the nodes"
    return play(u.deploy, node_prep_playbook(u.deploy), hint=f"run the same command again to resume at {NODE_PREP}")


def _phase(phase: Phase, u: UpgradeContext) -> str:
    ks = u.deploy.kubespray_dir
    path = write_phase_playbook(ks, phase, u.deploy.ws.playbooks)
    pb = Playbook(f"upgrade-{phase.name}", path, ks, extravars=u.extravars, kubespray_dir=ks)
    return play(u.deploy, pb, hint=f"run the same command again to resume at {phase.name}")


def upgrade_steps(kubespray_dir: Path, preflight: bool = True) -> list[Step[UpgradeContext]]:
    """preflight (unless skipped), node-prep, then every phase of kubespray's upgrade_cluster.yml, in order."""
    steps: list[Step[UpgradeContext]] = []
    if preflight:
        summary = "SSH to every node; finish any package install a node was interrupted in"
        steps.append(Step(PREFLIGHT, summary, lambda u: ran(check_nodes(u.deploy)), check=True, own_progress=True))
    prep = "kubeplay node prep again, when the OS repos or their key changed"
    steps.append(Step(NODE_PREP, prep, _node_prep, partial(_inputs, NODE_PREP), own_progress=True))
    for p in upgrade_phases(kubespray_dir):
        steps.append(Step(p.name, p.description, partial(_phase, p), partial(_inputs, p.name), own_progress=True))
    return steps


def _start(u: UpgradeContext) -> None:
    write_inventory(u.deploy.ws, u.deploy.inventory, u.deploy.group_vars)
    record_upgrade(u.deploy.ws.root, u.deploy.bundle, finished=False)


def upgrade_runner(u: UpgradeContext, preflight: bool = True) -> StepRunner[UpgradeContext]:
    """The runner of `kubeplay upgrade`: its steps and its own ledger (upgrade-<version>)."""
    return StepRunner(
        "upgrade",
        upgrade_steps(u.deploy.kubespray_dir, preflight),
        u.deploy.out,
        Ledger(u.ledger),
        on_start=partial(_start, u),
        details=stop_fields,
    )


def upgrade(
    u: UpgradeContext, selection: Selection | None = None, preflight: bool = True
) -> tuple[list[StepResult], bool]:
    """Run the upgrade steps `selection` asks for and are not done; return what each did and whether the
    upgrade is complete (then the cluster record names the new version). Raises as deploy does."""
    runner = upgrade_runner(u, preflight)
    if selection is not None and selection.only == NODE_PREP:
        u.prep_needed = True  # asked for by name: run it
    results = runner.run(u, selection)
    done = all_done(runner)
    if done:
        record_upgrade(u.deploy.ws.root, u.deploy.bundle, finished=True)
    return results, done
