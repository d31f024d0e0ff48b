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
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kubeplay.lab.nodes import Lab, unavailable_reason
from kubeplay.lab.record import default_state_root

_counter = itertools.count()


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
