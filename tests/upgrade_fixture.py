"""A deploy node's served set made by hand, as kubeplay.bootstrap.served reads it, and kubespray trees for it.

served/versions/<identity>/ holds kubeplay.json, version.json {kube_version, kubespray_version,
installed_at}, SHA256SUMS and kubespray/ (a real release unpacked from ../shared, or a small tree whose plays
carry kubespray's real names and only write a trace).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import require_shared


def real_release(dest: Path, version: str) -> Path:
    """kubespray `version` (e.g. "2.31.0") unpacked from ../shared/upstream/kubespray under `dest`, once."""
    tree = dest / f"kubespray-{version}"
    if not tree.is_dir():
        archive = require_shared("upstream", "kubespray", f"kubespray-v{version}.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    return tree


def add_version(
    served: Path,
    kube: str,
    spray: str,
    tree: Path,
    *,
    installed_at: str = "2026-12-01T00:00:00Z",
    repo_files: dict[str, str] | None = None,
) -> str:
    """Serve Kubernetes `kube` with kubespray `spray` (its tree: `tree`); return the version's identity.

    `repo_files` (path under repos/ -> sha256) is what its full SHA256SUMS lists for the OS repos."""
    manifest: dict[str, Any] = {
        "kube_version": kube,
        "kubespray": {"version": spray, "source": str(tree), "path": "kubespray"},
        "arches": ["amd64"],
        "os_repos": [],
        "images": [],
        "offline_vars": {},
    }
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    identity = hashlib.sha256(body).hexdigest()
    vdir = served / "versions" / identity
    vdir.mkdir(parents=True)
    (vdir / "kubeplay.json").write_bytes(body)
    record = {"kube_version": kube, "kubespray_version": spray, "installed_at": installed_at}
    (vdir / "version.json").write_text(json.dumps(record))
    sums = {"kubeplay.json": identity, **(repo_files or {})}
    (vdir / "SHA256SUMS").write_text("".join(f"{d}  {p}\n" for p, d in sorted(sums.items())))
    (vdir / "kubespray").symlink_to(tree.resolve())
    return identity


def write_record(state_dir: Path, kube: str, spray: str, identity: str = "", **extra: Any) -> None:
    """<state-dir>/cluster.json as a finished deploy of `kube` with kubespray `spray` leaves it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "kube_version": kube,
        "kubespray_version": spray,
        "bundle": identity,
        "at": "2026-12-01T00:00:00Z",
        "by": "deploy",
        "complete": True,
        **extra,
    }
    (state_dir / "cluster.json").write_text(json.dumps(record))


def config_file(path: Path, hosts: list[str], *, local: bool = False, **kubespray: Any) -> Path:
    """A config.yaml whose inventory holds `hosts` (the first one is control plane and etcd, all are workers;
    addresses 127.0.0.1, .2, ...); `local`: reached without SSH."""
    local_vars = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable} if local else {}
    members = {h: None for h in hosts}
    first = {hosts[0]: None}
    data = {
        "compose": {"internal_ip": "127.0.0.1", "nginx_http_port": 8080, "registry_domain": "kube.registry.local"},
        "kubespray": kubespray,
        "inventory": {
            "all": {
                "vars": {"ansible_user": "root"},
                "hosts": {h: {"ansible_host": f"127.0.0.{i + 1}", **local_vars} for i, h in enumerate(hosts)},
                "children": {
                    "kube_control_plane": {"hosts": dict(first)},
                    "kube_node": {"hosts": dict(members)},
                    "etcd": {"hosts": dict(first)},
                },
            }
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def _trace(word: str) -> dict[str, Any]:
    line = f"{word} {{{{ inventory_hostname }}}} {{{{ kube_version }}}} {{{{ kubeplay_tree }}}}"
    return {"name": f"trace {word}", "ansible.builtin.shell": f"echo '{line}' >> {{{{ trace_file }}}}"}


def _role(tree: Path, name: str, word: str) -> None:
    # Every role fails while "<trace_file>.fail-<word>" exists: a run that stops there, to resume.
    fail = {
        "name": f"{word} fails on request",
        "ansible.builtin.shell": f"test ! -e {{{{ trace_file }}}}.fail-{word} || {{ echo '{word} broke' >&2; exit 1; }}",
    }
    path = tree / "roles" / name / "tasks" / "main.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump([_trace(word), fail]))


def trace_tree(root: Path, label: str) -> Path:
    """A kubespray-shaped tree named `label`: cluster.yml, upgrade-cluster.yml and reset.yml with kubespray's
    play names, whose roles only append "<word> <host> <kube_version> <label>" to {{ trace_file }}."""
    ks = root / f"kubespray-{label}"
    pb = ks / "playbooks"
    pb.mkdir(parents=True)
    (pb / "boilerplate.yml").write_text(
        yaml.safe_dump([{"name": "boilerplate", "hosts": "all", "gather_facts": False, "tasks": []}])
    )
    (pb / "internal_facts.yml").write_text(
        yaml.safe_dump([{"name": "facts", "hosts": "all", "gather_facts": False, "tasks": []}])
    )
    prefix = [
        {"name": "Common tasks for every playbooks", "import_playbook": "boilerplate.yml"},
        {"name": "Gather facts", "import_playbook": "internal_facts.yml"},
    ]

    def play(name: str, hosts: str, role: str) -> dict[str, Any]:
        return {"name": name, "hosts": hosts, "gather_facts": False, "roles": [{"role": role}]}

    cluster = [*prefix, play("Install Kubernetes nodes", "kube_node", "kubernetes/node")]
    upgrade = [
        *prefix,
        play("Prepare nodes for upgrade", "kube_node:etcd", "upgrade/prepare"),
        play(
            "Handle upgrades to control plane components first to maintain backwards compat.",
            "kube_control_plane",
            "upgrade/control-plane",
        ),
        play("Finally handle worker upgrades, based on given batch size", "kube_node", "upgrade/workers"),
    ]
    (pb / "cluster.yml").write_text(yaml.safe_dump(cluster, sort_keys=False))
    (pb / "upgrade_cluster.yml").write_text(yaml.safe_dump(upgrade, sort_keys=False))
    (ks / "upgrade-cluster.yml").write_text(
        yaml.safe_dump(
            [{"name": "Upgrade cluster", "ansible.builtin.import_playbook": "playbooks/upgrade_cluster.yml"}]
        )
    )
    (ks / "reset.yml").write_text(yaml.safe_dump([play("Reset cluster", "all", "reset")], sort_keys=False))
    for role, word in (
        ("kubernetes/node", "node"),
        ("upgrade/prepare", "upgrade-prepare"),
        ("upgrade/control-plane", "upgrade-control-plane"),
        ("upgrade/workers", "upgrade-workers"),
        ("reset", "reset"),
    ):
        _role(ks, role, word)
    for role in ("kubernetes/node", "upgrade/prepare", "upgrade/control-plane", "upgrade/workers", "reset"):
        d = ks / "roles" / role / "defaults" / "main.yml"
        d.parent.mkdir(parents=True, exist_ok=True)
        d.write_text(f"kubeplay_tree: {label}\n")
    return ks
