"""The values kubespray itself accepts for kube_network_plugin, container_manager and etcd_deployment_type.

They are read from the release's own validation tasks (roles/validate_inventory on v2.27+,
roles/kubernetes/preinstall before), so a newer release with a new plugin needs no kubeplay change.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from kubeplay.catalog.source import KubesprayTree

VALIDATION_TASKS = ("roles/validate_inventory/tasks", "roles/kubernetes/preinstall/tasks")
FALLBACK = {
    "kube_network_plugin": (
        "calico",
        "flannel",
        "cloud",
        "cilium",
        "cni",
        "kube-ovn",
        "kube-router",
        "macvlan",
        "none",
    ),
    "container_manager": ("docker", "crio", "containerd"),
    "etcd_deployment_type": ("host", "docker", "kubeadm"),
}


@dataclass(frozen=True)
class Choices:
    network_plugins: tuple[str, ...]
    container_managers: tuple[str, ...]
    etcd_deployment_types: tuple[str, ...]


def list_after(variable: str, text: str) -> tuple[str, ...]:
    """The longest literal list in `<variable> in [...]` assertions within `text`."""
    best: tuple[str, ...] = ()
    for match in re.finditer(rf"\b{variable}\s+in\s+(\[[^\]]*\])", text):
        try:
            values = ast.literal_eval(match.group(1))
        except (ValueError, SyntaxError):
            continue
        if isinstance(values, list) and all(isinstance(v, str) for v in values) and len(values) > len(best):
            best = tuple(values)
    return best


def supported_choices(tree: KubesprayTree) -> Choices:
    texts = []
    for folder in VALIDATION_TASKS:
        base = tree.root / folder
        if base.is_dir():
            texts += [p.read_text(encoding="utf-8", errors="replace") for p in sorted(base.glob("*.y*ml"))]
    text = "\n".join(texts)

    def pick(variable: str) -> tuple[str, ...]:
        return list_after(variable, text) or FALLBACK[variable]

    return Choices(
        network_plugins=pick("kube_network_plugin"),
        container_managers=pick("container_manager"),
        etcd_deployment_types=pick("etcd_deployment_type"),
    )
