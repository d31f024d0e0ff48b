"""The demo's input files, as data: bundle.yaml for the build side, config.yaml for the deploy node."""

from __future__ import annotations

from typing import Any

import yaml

from kubeplay.lab.nodes import LabNode

DOMAIN = "kube.registry.local"
HTTP_PORT = 8080
NODE_KEY = "/root/.ssh/id_ed25519"  # where Lab.give_ssh_access puts the lab key on the deploy node


def bundle_spec(served: dict[str, Any]) -> dict[str, Any]:
    """bundle.yaml: the simulator's (kubespray from the simulated GitHub, amd64, every upstream host
    mirrored to it) plus Debian 12 packages (osrepo's default list: kubespray's system packages,
    containerd, and the deploy node's nginx, chrony, docker-registry)."""
    return {**served, "os": [{"distro": "debian", "release": "12", "arches": ["amd64"]}]}


def deploy_config(deploy: LabNode, nodes: list[LabNode]) -> dict[str, Any]:
    """config.yaml (the original kubeplay's shape) for the deploy node: the first cluster node is the
    control plane and etcd, every cluster node a worker; Ansible logs in as root with the lab key."""
    names = [n.name for n in nodes]
    return {
        "compose": {"internal_ip": deploy.ip, "nginx_http_port": HTTP_PORT, "registry_domain": DOMAIN},
        "kubespray": {
            "kube_network_plugin": "calico",
            "container_manager": "containerd",
            # Lab nodes are already named as in the inventory; renaming would go through systemd-hostnamed,
            # which a container on a cgroup-v1 host without systemd cannot always start.
            "override_system_hostname": False,
        },
        "inventory": {
            "all": {
                "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": NODE_KEY},
                "hosts": {n.name: {"ansible_host": n.ip} for n in nodes},
                "children": {
                    "kube_control_plane": {"hosts": {names[0]: None}},
                    "etcd": {"hosts": {names[0]: None}},
                    "kube_node": {"hosts": dict.fromkeys(names)},
                    "k8s_cluster": {"children": {"kube_control_plane": None, "kube_node": None}},
                },
            }
        },
        "default": {
            "ntp_server": [deploy.ip],
            "registry_ip": deploy.ip,
            "registry_https_port": 443,
            "registry_push_port": 5000,
        },
    }


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)
