"""`kubeplay deploy` as a user runs it: bad input stops with exit 2 before any host is touched; an
unreachable node is named with its SSH error (exit 1); a secret in config.yaml is never printed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

KUBEPLAY = Path(sys.executable).parent / "kubeplay"
SECRET = "Kp-cli-secret-91c2"


def bundle(tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    (root / "kubespray" / "playbooks").mkdir(parents=True, exist_ok=True)
    (root / "kubespray" / "playbooks" / "cluster.yml").write_text("[]\n")
    (root / "kubeplay.json").write_text(json.dumps({"kube_version": "1.33.4", "arches": ["amd64"]}))
    return root


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(tmp_path: Path, **overrides: Any) -> Path:
    data: dict[str, Any] = {
        "compose": {"internal_ip": "127.0.0.1", "nginx_http_port": 8080, "registry_domain": "kube.registry.local"},
        "kubespray": {},
        "inventory": {
            "all": {
                "vars": {"ansible_user": "root", "ansible_ssh_pass": SECRET},
                "hosts": {"node1": {"ansible_host": "127.0.0.1", "ansible_port": closed_port()}},
                "children": {
                    "kube_control_plane": {"hosts": {"node1": None}},
                    "kube_node": {"hosts": {"node1": None}},
                    "etcd": {"hosts": {"node1": None}},
                },
            }
        },
    }
    data.update(overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(tmp_path: Path, cfg: Path, *args: str, json_events: bool = False) -> subprocess.CompletedProcess[str]:
    ca = tmp_path / "rootCA.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    argv = [str(KUBEPLAY), *(["--json-events"] if json_events else []), "deploy", "-c", str(cfg)]
    argv += ["--bundle", str(bundle(tmp_path)), "--ca", str(ca), "--state-dir", str(tmp_path / "state"), *args]
    env = {**os.environ, "COLUMNS": "200"}  # table rows on one line each
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, env=env)


def test_kube_version_other_than_the_bundle_is_refused_before_any_host(tmp_path: Path) -> None:
    proc = run(tmp_path, config(tmp_path, kubespray={"kube_version": "1.32.0"}))
    assert proc.returncode == 2
    assert "kubespray.kube_version is 1.32.0 but the bundle carries Kubernetes 1.33.4" in proc.stderr
    assert not (tmp_path / "state" / "logs").exists()  # no playbook ran


def test_bad_inventory_exits_2_naming_the_field(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    data = yaml.safe_load(cfg.read_text())
    data["inventory"]["all"]["children"]["etcd"]["hosts"]["node2"] = None
    cfg.write_text(yaml.safe_dump(data))
    proc = run(tmp_path, cfg)
    assert proc.returncode == 2
    assert "inventory.all.children.etcd.hosts.node2.ansible_host: missing" in proc.stderr
    assert "etcd needs an odd number" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_list_steps_and_an_unknown_step(tmp_path: Path) -> None:
    listed = run(tmp_path, config(tmp_path), "--list-steps")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split(None, 2) for line in listed.stderr.splitlines()[1:] if line.strip()]
    assert [r[:2] for r in rows] == [["preflight", "each"], ["node-prep", "-"], ["os-bootstrap", "-"]]
    bad = run(tmp_path, config(tmp_path), "--from", "kubeadm")
    assert bad.returncode == 2
    assert "error: --from kubeadm: no such deploy step" in bad.stderr
    assert "deploy steps: preflight, node-prep, os-bootstrap" in bad.stderr
    assert not (tmp_path / "state" / "logs").exists()  # no playbook ran


@pytest.mark.slow
def test_unreachable_node_is_named_with_the_ssh_error_and_the_secret_is_not(tmp_path: Path) -> None:
    proc = run(tmp_path, config(tmp_path), json_events=True)
    steps = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"event": "step"')]
    assert [(e["command"], e["step"], e["status"]) for e in steps] == [
        ("deploy", "preflight", "started"),
        ("deploy", "preflight", "failed"),
    ]
    assert steps[1]["error"].startswith("preflight: cannot work on node1")
    assert proc.returncode == 1
    assert "preflight: cannot work on node1" in proc.stderr
    assert "node1:" in proc.stderr and ("sshpass" in proc.stderr or "Connection refused" in proc.stderr)
    assert SECRET not in proc.stderr + proc.stdout
    logs = tmp_path / "state" / "logs"
    assert logs.is_dir()
    assert all(SECRET not in p.read_text() for p in logs.iterdir())


def test_reset_refuses_keep_node_prep_with_node_prep_only(tmp_path: Path) -> None:
    ca = tmp_path / "rootCA.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    argv = [str(KUBEPLAY), "reset", "--keep-node-prep", "--node-prep-only", "-c", str(config(tmp_path))]
    argv += ["--bundle", str(bundle(tmp_path)), "--ca", str(ca), "--state-dir", str(tmp_path / "state")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert "--keep-node-prep and --node-prep-only together would do nothing" in proc.stderr
    assert not (tmp_path / "state" / "logs").exists()  # no playbook ran
