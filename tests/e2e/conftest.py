"""Lab-node fixtures for e2e tests: air-gapped Debian nodes in systemd-nspawn, torn down afterwards.

Use in any test under tests/e2e/:

    LAB_NODES = 3                      # optional, module level: how many nodes `lab` has (default 2)

    def test_something(lab):           # module-scoped: one lab per test module
        node0, node1 = lab.nodes[0], lab.nodes[1]
        node0.copy_in(bundle_path, "/root/bundle.tar.zst")
        result = node0.run(["sh", "-c", "cd /root && ./install.sh"], timeout=600, check=True)
        node1.run(f"python3 -c 'import urllib.request as u; print(u.urlopen(\"http://{node0.ip}:8080/\").status)'")
        lab.lab_side(["curl", f"http://{node0.ip}/"])   # host tools run inside the lab-side namespace

    def test_other(make_lab):          # session-scoped factory when a test wants its own lab
        lab = make_lab(1)

Each node has `.name`, `.ip`, `.run(cmd, timeout=, check=, input=) -> CompletedProcess[str]`,
`.ssh_argv(cmd)`, `.copy_in(src, dest)` and `.root` (its directory on the host).
Labs live where `kubeplay lab status` sees them (unique names t<pid>x<n>); the rootfs cache is shared (lab/ of the cache root: $KUBEPLAY_CACHE_DIR or /var/cache/kubeplay).
"""

from __future__ import annotations

import itertools
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.build_fixture import build_with_plan, kubespray_archive, make_plan, write_spec
from tests.conftest import skip_or_fail

from kubeplay.lab.nodes import Lab, LabNode, unavailable_reason
from kubeplay.lab.record import default_state_root
from kubeplay.lab.upstream import UpstreamSimulator

_counter = itertools.count()

# The modules that install a bundle on lab nodes (test_install_lab, test_trust_lab, test_workloads_lab)
# share these: `pytestmark = INSTALL_MARKS` (the bundle's wheels are for the nodes' Python), node0's
# bundle directory and config.yaml, the nspawn arguments, and `sh`/`ok` to run a script on a node.
INSTALL_MARKS = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
    pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="lab nodes run Debian 12's Python 3.11"),
]
DOMAIN = "kube.registry.local"
# What a deploy node installs from the bundle repo (kubeplay.bootstrap.osrepo.APT_PACKAGES, nginx-light
# chosen): gpg and gpg-agent sign the served repos' indexes with the deploy node's own key.
DEPLOY_PACKAGES = ["nginx-light", "chrony", "docker-registry", "curl", "gpg", "gpg-agent"]
BUNDLE_IN_NODE = "/opt/kubeplay-bundle"
CONFIG = f"""\
compose:
  internal_ip:
  nginx_http_port: 8080
  registry_domain: {DOMAIN}
inventory:
  all:
    hosts:
      node1: {{ansible_host: NODE1_IP}}
default:
  registry_https_port: 443
  registry_push_port: 5000
"""
# nspawn bind-mounts the host's /etc/localtime by default, so tzdata's postinst (chrony needs tzdata)
# cannot replace it and dpkg fails; a real deploy node has its own /etc/localtime (reported to lab).
NSPAWN_ARGS = ("--timezone=off",)


def sh(node: LabNode, script: str, timeout: float = 300) -> tuple[int, str]:
    r = node.run(["sh", "-c", script], timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def ok(node: LabNode, script: str, timeout: float = 300) -> str:
    code, out = sh(node, script, timeout)
    assert code == 0, f"{node.name}: {script}\n{out}"
    return out


def require_bookworm_mirror() -> None:
    from kubeplay.osrepo.host_sources import host_sources_for

    if not [s for s in host_sources_for("bookworm") if "bookworm" in s.suites]:
        skip_or_fail("this machine's apt sources have no Debian bookworm mirror")


def build_for_node(root: Path, node: LabNode, sim: UpstreamSimulator, packages: list[str], **spec: Any) -> Path:
    """`kubeplay build` against `sim` of a bundle for `node` at root/bundle: amd64, kubespray's plan empty,
    wheels, a Debian 12 repo with `packages` and what they need beyond the node's own dpkg status, and
    `spec` (images:, files:, charts: …) added to bundle.yaml."""
    baseline = root / "node-dpkg-status"
    shutil.copyfile(node.root / "var/lib/dpkg/status", baseline)
    archive, sha = kubespray_archive(root / "src")
    spec_path = write_spec(root, sim, str(archive), sha)
    data = yaml.safe_load(spec_path.read_text())
    data.update(
        arches=["amd64"],
        os=[{"distro": "debian", "release": "12", "arches": ["amd64"], "baseline": str(baseline)}],
        packages={"defaults": False, "apt": packages},
        **spec,
    )
    spec_path.write_text(yaml.safe_dump(data))
    plan = make_plan([], []).model_copy(update={"arches": ("amd64",)})
    result = build_with_plan(spec_path, root / "bundle", plan, wheels=True)
    assert result.ok, result.failures
    return root / "bundle"


def unique_lab_name() -> str:
    """A lab name no other test session on this machine uses at the same time (random, 12 chars max).

    Not pid-based: pids above 100000 collide modulo any short width, and a killed run's state may linger.
    """
    return f"t{secrets.token_hex(4)}x{next(_counter) % 10}"


@pytest.fixture(scope="session")
def lab_state_root() -> Path:
    """Where test labs live: the normal place ($KUBEPLAY_LAB_DIR or /var/lib/kubeplay/lab), so a lab left
    behind by a killed test run shows in `kubeplay lab status` and goes with `kubeplay lab down --all`."""
    return default_state_root()


@pytest.fixture
def lab_name() -> str:
    """A fresh, unique lab name for a test that drives `Lab.up` or the CLI itself."""
    return unique_lab_name()


@pytest.fixture(scope="session")
def make_lab(lab_state_root: Path) -> Iterator[Callable[..., Lab]]:
    """Factory: make_lab(n, **kwargs) -> a running Lab; every lab it made is brought down at session end."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    made: list[Lab] = []

    def factory(nodes: int = 2, **kwargs: object) -> Lab:
        kwargs.setdefault("name", unique_lab_name())
        kwargs.setdefault("state_root", lab_state_root)
        lab = Lab.up(nodes, **kwargs)  # type: ignore[arg-type]
        made.append(lab)
        return lab

    yield factory
    for lab in reversed(made):
        if lab.nodes:
            lab.down()


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest, lab_state_root: Path) -> Iterator[Lab]:
    """A running lab with `LAB_NODES` nodes (module attribute, default 2), shared by the module's tests."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    nodes = int(getattr(request.module, "LAB_NODES", 2))
    with Lab.up(nodes, name=unique_lab_name(), state_root=lab_state_root) as running:
        yield running
