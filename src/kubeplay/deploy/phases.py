"""kubespray's cluster.yml, cut into resumable phases along its own plays.

Each phase is one ansible-playbook run of a generated playbook that imports kubespray's
`boilerplate.yml` and `internal_facts.yml` (OS bootstrap, system packages, facts — as every kubespray
entry playbook does) and then the phase's plays, copied unchanged from `playbooks/cluster.yml` of the
bundle's tree, in their original order. The first play ("Prepare for etcd install") is cut by role into
preinstall, container-engine and download. Phases after preinstall first re-derive the facts that
`kubernetes/preinstall` sets for later plays (its 0020-set_facts.yml). The union of all
phases is exactly cluster.yml; a failed deploy resumes at the phase that failed.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubeplay.errors import BundleError

PREFIX_PLAYBOOKS = ("boilerplate.yml", "internal_facts.yml")
OS_BOOTSTRAP = "os-bootstrap"
# Play names of kubespray's playbooks/cluster.yml (v2.2x-2.31) -> phase. Unknown plays get their own phase.
PLAY_PHASES = {
    "Install etcd": "etcd",
    "Install Kubernetes nodes": "node",
    "Install the control plane": "control-plane",
    "Invoke kubeadm and install a CNI": "network",
    "Install Calico Route Reflector": "network",
    "Patch Kubernetes for Windows": "apps",
    "Install Kubernetes apps": "apps",
    "Apply resolv.conf changes now that cluster DNS is up": "apps",
}
# Plays cut by role: role name -> phase.
SPLIT_PLAYS = {
    "Prepare for etcd install": {
        "kubernetes/preinstall": "preinstall",
        "container-engine": "container-engine",
        "download": "download",
    }
}
DESCRIPTIONS = {
    OS_BOOTSTRAP: "kubespray bootstrap_os, system packages, facts",
    "preinstall": "kubespray kubernetes/preinstall: swap, sysctl, directories, resolv.conf",
    "container-engine": "kubespray container-engine (containerd, runc, crictl, nerdctl)",
    "download": "kubespray download: binaries and images onto the nodes",
    "etcd": "kubespray etcd",
    "node": "kubespray kubernetes/node: kubelet",
    "control-plane": "kubespray control plane (kubeadm init), client, cluster roles",
    "network": "kubespray kubeadm join, node labels/taints, CNI",
    "apps": "kubespray Kubernetes apps (CoreDNS, ...), resolv.conf",
}
FACTS_TASKS = "0020-set_facts.yml"


@dataclass
class Phase:
    name: str
    description: str
    plays: list[dict[str, Any]] = field(default_factory=list)
    after_preinstall: bool = False
    source: str = "cluster.yml"  # the kubespray playbook the plays come from


# kubespray's playbooks/upgrade_cluster.yml (v2.30-2.31): play name -> phase. The first two plays run
# kubernetes/preinstall and download of the new version on every node; later phases re-derive its facts.
UPGRADE_SOURCE = "upgrade_cluster.yml"
UPGRADE_PREINSTALL = "prepare"
UPGRADE_PLAY_PHASES = {
    "Download images to ansible host cache via first kube_control_plane node": UPGRADE_PREINSTALL,
    "Prepare nodes for upgrade": UPGRADE_PREINSTALL,
    "Upgrade container engine on non-cluster nodes": "container-engine",
    "Install etcd": "etcd",
    "Handle upgrades to control plane components first to maintain backwards compat.": "control-plane",
    "Upgrade calico and external cloud provider on all control plane nodes, calico-rrs, and nodes": "network",
    "Finally handle worker upgrades, based on given batch size": "workers",
    "Patch Kubernetes for Windows": "apps",
    "Install Calico Route Reflector": "apps",
    "Install Kubernetes apps": "apps",
    "Apply resolv.conf changes now that cluster DNS is up": "apps",
}
UPGRADE_DESCRIPTIONS = {
    UPGRADE_PREINSTALL: "kubespray preinstall, and download of the new version onto every node",
    "container-engine": "kubespray container engine on etcd/calico_rr nodes outside the cluster",
    "etcd": "kubespray etcd",
    "control-plane": "kubespray control plane, one node at a time: drain, kubeadm upgrade, kubelet, uncordon",
    "network": "kubespray CNI and cloud controller, `serial` nodes at a time",
    "workers": "kubespray worker nodes, `serial` at a time: drain, containerd, kubelet, uncordon",
    "apps": "kubespray Calico route reflectors, Kubernetes apps (CoreDNS, ...), resolv.conf",
}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "play"


def _role_name(entry: Any) -> str:
    return str(entry.get("role", "")) if isinstance(entry, dict) else str(entry)


def _absolute_import(play: dict[str, Any], playbooks_dir: Path) -> dict[str, Any]:
    out = copy.deepcopy(play)
    for key in ("import_playbook", "ansible.builtin.import_playbook"):
        if key in out:
            target = Path(str(out[key]))
            out[key] = str(target if target.is_absolute() else playbooks_dir / target)
    return out


def _imported(play: dict[str, Any]) -> str | None:
    value = play.get("import_playbook", play.get("ansible.builtin.import_playbook"))
    return None if value is None else Path(str(value)).name


def read_cluster_plays(kubespray_dir: Path, source: str = "cluster.yml") -> list[dict[str, Any]]:
    """The entries of playbooks/<source> (or <source> at the top, for old trees); BundleError if absent.

    A top-level file that only imports the playbooks/ one (v2.2x+: cluster.yml, upgrade-cluster.yml) is skipped.
    """
    names = {source, source.replace("_", "-")}
    candidates = [kubespray_dir / "playbooks" / source, *(kubespray_dir / n for n in sorted(names))]
    for candidate in candidates:
        if candidate.is_file():
            data = yaml.safe_load(candidate.read_text(encoding="utf-8"))
            if isinstance(data, list) and not (len(data) == 1 and _imported(data[0]) in names):
                return [d for d in data if isinstance(d, dict)]
    raise BundleError(f"{kubespray_dir}: no playbooks/{source}", hint="the bundle's kubespray/ directory is incomplete")


def kubespray_phases(kubespray_dir: Path) -> list[Phase]:
    """The phases of cluster.yml in order, starting with os-bootstrap (the common prefix alone)."""
    playbooks_dir = kubespray_dir / "playbooks"
    phases: list[Phase] = [Phase(OS_BOOTSTRAP, DESCRIPTIONS[OS_BOOTSTRAP])]
    seen_preinstall = False

    def add(name: str, play: dict[str, Any]) -> None:
        nonlocal seen_preinstall
        if phases[-1].name != name:
            if any(p.name == name for p in phases):
                name = f"{name}-{sum(1 for p in phases if p.name.startswith(name)) + 1}"
            phases.append(Phase(name, DESCRIPTIONS.get(name, f"kubespray play: {play.get('name', name)}")))
            phases[-1].after_preinstall = seen_preinstall
        phases[-1].plays.append(_absolute_import(play, playbooks_dir))
        if name == "preinstall":
            seen_preinstall = True

    for play in read_cluster_plays(kubespray_dir):
        if _imported(play) in PREFIX_PLAYBOOKS:
            continue
        title = str(play.get("name", ""))
        if title in SPLIT_PLAYS and isinstance(play.get("roles"), list):
            split = SPLIT_PLAYS[title]
            shared = [r for r in play["roles"] if _role_name(r) not in split]
            for role in play["roles"]:
                if _role_name(role) in split:
                    part = {**copy.deepcopy(play), "name": f"{title} ({_role_name(role)})"}
                    part["roles"] = [*copy.deepcopy(shared), copy.deepcopy(role)]
                    add(split[_role_name(role)], part)
            continue
        add(PLAY_PHASES.get(title, _slug(title)), play)
    return phases


def upgrade_phases(kubespray_dir: Path) -> list[Phase]:
    """The phases of kubespray's upgrade_cluster.yml in order (its prefix imports run in every phase).

    Plays this kubeplay does not know get a phase of their own; the union of all phases is exactly the
    playbook, in its order."""
    playbooks_dir = kubespray_dir / "playbooks"
    phases: list[Phase] = []
    seen_preinstall = False
    for play in read_cluster_plays(kubespray_dir, UPGRADE_SOURCE):
        if _imported(play) in PREFIX_PLAYBOOKS:
            continue
        title = str(play.get("name", ""))
        name = UPGRADE_PLAY_PHASES.get(title, _slug(title))
        if not phases or phases[-1].name != name:
            if any(p.name == name for p in phases):
                name = f"{name}-{sum(1 for p in phases if p.name.startswith(name)) + 1}"
            description = UPGRADE_DESCRIPTIONS.get(name, f"kubespray play: {title or name}")
            phases.append(Phase(name, description, after_preinstall=seen_preinstall, source=UPGRADE_SOURCE))
        phases[-1].plays.append(_absolute_import(play, playbooks_dir))
        if name == UPGRADE_PREINSTALL:
            seen_preinstall = True
    return phases


def facts_play(kubespray_dir: Path) -> dict[str, Any] | None:
    """A play re-deriving kubernetes/preinstall's facts for later plays, if this kubespray has that file."""
    if not (kubespray_dir / "roles" / "kubernetes" / "preinstall" / "tasks" / FACTS_TASKS).is_file():
        return None
    return {
        "name": "kubeplay: facts that kubernetes/preinstall set for later plays (idempotent)",
        "hosts": "k8s_cluster:etcd",
        "gather_facts": False,
        "environment": "{{ proxy_disable_env }}",
        "roles": [{"role": "kubespray_defaults"}],
        "tasks": [
            {
                "name": "kubernetes/preinstall facts",
                "ansible.builtin.import_role": {"name": "kubernetes/preinstall", "tasks_from": FACTS_TASKS},
            }
        ],
    }


def phase_playbook(kubespray_dir: Path, phase: Phase) -> list[dict[str, Any]]:
    """The playbook (as data) for one phase: kubespray's prefix imports, then the phase's plays."""
    playbooks_dir = kubespray_dir / "playbooks"
    body: list[dict[str, Any]] = [
        {"name": "Common tasks for every playbooks", "import_playbook": str(playbooks_dir / "boilerplate.yml")},
        {"name": "Gather facts", "import_playbook": str(playbooks_dir / "internal_facts.yml")},
    ]
    if phase.after_preinstall:
        extra = facts_play(kubespray_dir)
        if extra is not None:
            body.append(extra)
    body.extend(copy.deepcopy(phase.plays))
    return body


def write_phase_playbook(kubespray_dir: Path, phase: Phase, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    stem = "kubespray" if phase.source == "cluster.yml" else f"kubespray-{Path(phase.source).stem.replace('_', '-')}"
    path = dest_dir / f"{stem}-{phase.name}.yml"
    header = f"# Generated by kubeplay from {kubespray_dir}/playbooks/{phase.source}: phase {phase.name}.\n"
    path.write_text(header + yaml.safe_dump(phase_playbook(kubespray_dir, phase), sort_keys=False), encoding="utf-8")
    return path
