"""The deploy ledger for real: a kubespray-shaped tree whose plays run on localhost; a failed phase resumes.

Also: the phase split of the real kubespray release (when ../shared or an extracted tree is present) covers
every play of its cluster.yml exactly once, in order.
"""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from tests.conftest import require_shared, skip_or_fail

from kubeplay.bootstrap.bundleinfo import BundleFacts
from kubeplay.config.install import EffectiveConfig
from kubeplay.console import Output
from kubeplay.deploy.context import DeployContext
from kubeplay.deploy.inventory import parse_inventory
from kubeplay.deploy.phases import kubespray_phases, phase_playbook, read_cluster_plays
from kubeplay.deploy.runner import Workspace
from kubeplay.deploy.steps import NODE_PREP, deploy, deploy_runner
from kubeplay.errors import BadInput, StepFailed
from kubeplay.state import Ledger, input_hash
from kubeplay.steps import Selection

ORDER = ["node-prep", "os-bootstrap", "preinstall", "container-engine", "download", "etcd", "node"]


def test_deploy_steps_and_unknown_step_wording(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, fake_kubespray(tmp_path))
    runner = deploy_runner(ctx)
    assert runner.names == ["preflight", *ORDER]
    assert deploy_runner(ctx, preflight=False).names == ORDER
    with pytest.raises(BadInput) as info:
        deploy(ctx, Selection(from_step="kubeadm"))
    assert info.value.message == "--from kubeadm: no such deploy step"
    assert info.value.hint == "deploy steps: preflight, " + ", ".join(ORDER)
    assert not ctx.ws.root.exists(), "a refused selection writes nothing"


def _role(root: Path, name: str, tasks: list[dict[str, object]], tasks_file: str = "main.yml") -> None:
    path = root / "roles" / name / "tasks" / tasks_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tasks))


def _trace(word: str) -> dict[str, object]:
    return {"name": f"trace {word}", "ansible.builtin.shell": f"echo {word} >> {{{{ trace_file }}}}"}


def fake_kubespray(root: Path) -> Path:
    """A kubespray-shaped tree: the real play names and structure, tasks that only write a trace."""
    ks = root / "kubespray"
    pb = ks / "playbooks"
    pb.mkdir(parents=True)
    for name in ("boilerplate", "internal_facts"):
        (pb / f"{name}.yml").write_text(
            yaml.safe_dump([{"name": name, "hosts": "all", "gather_facts": False, "tasks": [_trace(name)]}])
        )
    (pb / "install_etcd.yml").write_text(
        yaml.safe_dump([{"name": "Install etcd", "hosts": "etcd", "gather_facts": False, "roles": ["etcd"]}])
    )
    plays = [
        {"name": "Common tasks for every playbooks", "import_playbook": "boilerplate.yml"},
        {"name": "Gather facts", "import_playbook": "internal_facts.yml"},
        {
            "name": "Prepare for etcd install",
            "hosts": "k8s_cluster:etcd",
            "gather_facts": False,
            "roles": [
                {"role": "kubespray_defaults"},
                {"role": "kubernetes/preinstall", "tags": "preinstall"},
                {"role": "container-engine", "tags": "container-engine"},
                {"role": "download", "tags": "download"},
            ],
        },
        {"name": "Install etcd", "import_playbook": "install_etcd.yml"},
        {
            "name": "Install Kubernetes nodes",
            "hosts": "k8s_cluster",
            "gather_facts": False,
            "roles": ["kubernetes/node"],
        },
    ]
    (pb / "cluster.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    (ks / "cluster.yml").write_text(yaml.safe_dump([{"ansible.builtin.import_playbook": "playbooks/cluster.yml"}]))
    _role(ks, "kubespray_defaults", [])
    defaults = ks / "roles" / "kubespray_defaults" / "defaults" / "main.yml"
    defaults.parent.mkdir(parents=True)
    defaults.write_text("proxy_disable_env: {}\n")
    _role(ks, "kubernetes/preinstall", [_trace("preinstall")])
    _role(ks, "kubernetes/preinstall", [_trace("facts")], "0020-set_facts.yml")
    _role(ks, "container-engine", [_trace("container-engine")])
    _role(ks, "download", [_trace("download")])
    _role(ks, "etcd", [_trace("etcd")])
    fail_if_flag = {
        "name": "kubelet",
        "ansible.builtin.shell": "test ! -e {{ fail_flag }} || { echo 'kubelet did not start' >&2; exit 1; }",
    }
    _role(ks, "kubernetes/node", [_trace("node"), fail_if_flag])
    return ks


def make_context(tmp_path: Path, ks: Path) -> DeployContext:
    inv = parse_inventory(
        {
            "all": {
                "hosts": {
                    "node1": {
                        "ansible_host": "127.0.0.1",
                        "ansible_connection": "local",
                        "ansible_python_interpreter": sys.executable,
                    }
                },
                "children": {
                    "kube_control_plane": {"hosts": {"node1": None}},
                    "kube_node": {"hosts": {"node1": None}},
                    "etcd": {"hosts": {"node1": None}},
                    "k8s_cluster": {"children": {"kube_control_plane": None, "kube_node": None}},
                },
            }
        }
    )
    cfg = EffectiveConfig(
        source="config.yaml", internal_ip="127.0.0.1", internal_ip_detected=False, registry_domain="kube.registry.local",
        registry_ip="127.0.0.1", nginx_http_port=8080, registry_https_port=443, registry_push_port=5000,
        generate_domain_crt=True, image_repository="library", ntp_servers=["127.0.0.1"], ntp_allow=[],
        offline_resources_url="http://127.0.0.1:8080", config={},
    )  # fmt: skip
    return DeployContext(
        config_path=tmp_path / "config.yaml",
        cfg=cfg,
        bundle=BundleFacts(root=tmp_path, kube_version="1.33.4", arches=("amd64",), repos=()),
        kubespray_dir=ks,
        inventory=inv,
        group_vars={"trace_file": str(tmp_path / "trace"), "fail_flag": str(tmp_path / "fail")},
        ws=Workspace(tmp_path / "state"),
        ca_path=tmp_path / "ca.crt",
        out=Output(console=Console(file=io.StringIO(), width=120)),
    )


def screen(ctx: DeployContext) -> str:
    console_file = ctx.out.console.file
    assert isinstance(console_file, io.StringIO)
    return console_file.getvalue()


def take_trace(tmp_path: Path) -> list[str]:
    path = tmp_path / "trace"
    words = path.read_text().split() if path.exists() else []
    path.unlink(missing_ok=True)
    return [w for w in words if w not in ("boilerplate", "internal_facts")]


@pytest.mark.slow
def test_failed_phase_resumes_where_it_stopped(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, fake_kubespray(tmp_path))
    # node prep is kubeplay's own playbook against real hosts; here it is recorded as done.
    Ledger(ctx.ws.ledger).mark_done(NODE_PREP, input_hash({"step": NODE_PREP, "inputs": ctx.inputs_digest}))
    (tmp_path / "fail").touch()
    with pytest.raises(StepFailed) as info:
        deploy(ctx, preflight=False)
    assert info.value.message.startswith(
        "node: task 'kubelet' failed on node1: non-zero return code: kubelet did not start"
    )
    assert "resume at node" in (info.value.hint or "")
    assert take_trace(tmp_path) == [
        "preinstall",
        "facts",
        "container-engine",
        "facts",
        "download",
        "facts",
        "etcd",
        "facts",
        "node",
    ]

    (tmp_path / "fail").unlink()
    outcomes = deploy(ctx, preflight=False)
    assert [(o.name, o.ran) for o in outcomes] == [(s, s == "node") for s in ORDER]
    assert "- etcd: done earlier, inputs unchanged" in screen(ctx)
    assert "✓ node: 1 host(s)" in screen(ctx)
    assert take_trace(tmp_path) == ["facts", "node"]

    assert [o.name for o in deploy(ctx, preflight=False) if o.ran] == []
    assert [o.name for o in deploy(ctx, Selection(from_step="etcd"), preflight=False) if o.ran] == ["etcd", "node"]
    assert take_trace(tmp_path) == ["facts", "etcd", "facts", "node"]
    assert [o.name for o in deploy(ctx, Selection(only="preinstall"), preflight=False) if o.ran] == ["preinstall"]
    assert take_trace(tmp_path) == ["preinstall"]


def _real_tree(tmp_path: Path) -> Path:
    archives = sorted(require_shared("upstream", "kubespray").glob("kubespray-*.tar.gz"))
    if not archives:
        skip_or_fail("../shared has no kubespray release")
    with tarfile.open(archives[-1]) as tar:
        members = [m for m in tar.getmembers() if "/playbooks/" in m.name and m.isfile()]
        members += [m for m in tar.getmembers() if m.name.endswith("preinstall/tasks/0020-set_facts.yml")]
        tar.extractall(tmp_path, members=members, filter="data")
    return next(tmp_path.glob("kubespray-*"))


def test_real_kubespray_phases_cover_cluster_yml_exactly(tmp_path: Path) -> None:
    ks = _real_tree(tmp_path)
    phases = kubespray_phases(ks)
    assert [p.name for p in phases] == [
        "os-bootstrap", "preinstall", "container-engine", "download", "etcd", "node", "control-plane", "network", "apps",
    ]  # fmt: skip
    plays = [
        p for p in read_cluster_plays(ks) if p.get("import_playbook") not in ("boilerplate.yml", "internal_facts.yml")
    ]
    split_roles = [r for r in plays[0]["roles"] if r.get("role") != "kubespray_defaults"]
    covered = [pl for ph in phases for pl in ph.plays]
    assert len(covered) == len(plays) - 1 + len(split_roles)
    assert [c["roles"][-1] for c in covered[: len(split_roles)]] == split_roles
    assert [c.get("name") for c in covered[len(split_roles) :]] == [p.get("name") for p in plays[1:]]
    etcd_play = phase_playbook(ks, phases[4])
    assert etcd_play[0]["import_playbook"] == str(ks / "playbooks" / "boilerplate.yml")
    assert etcd_play[-1]["import_playbook"] == str(ks / "playbooks" / "install_etcd.yml")
    assert any("tasks_from" in str(p) for p in etcd_play)  # preinstall's facts for later phases
