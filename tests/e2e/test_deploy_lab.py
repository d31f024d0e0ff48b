"""kubeplay deploy against air-gapped lab nodes, with kubespray's real playbooks (newest release in ../shared).

One lab of three nodes and one deploy side serve the whole module (tests/e2e/deploy_support.py: real nginx
serving a signed Debian 12 repo built by kubeplay.osrepo, real chronyd, on the lab bridge). Nodes have no
route anywhere else, so every package comes from that repo. In order:

1. wrong SSH password / wrong key against the nodes' real sshd: named, the secret nowhere;
2. deploy to node0+node1 with node1 powered off mid-way through os-bootstrap (while dpkg runs there):
   stopped there, named; node1 back, the re-run finishes the interrupted dpkg, resumes at os-bootstrap and goes on until the first kubespray task a systemd-nspawn
   container cannot do (kernel parameters in preinstall), which the stop names with host, task and log;
3. dpkg left as a cut mid-unpack leaves it (a half-installed library, its unpacked dependant): preflight's
   node repair reinstalls it from the bundle repo and finishes configuration;
4. day 2: add-node node2 (inventory from config.yaml, node prep, scale.yml --limit) to the same stop;
   remove-node node2 (no control plane: reset only, node prep undone); reset (kubespray's reset.yml stops
   on the same kernel limit) and reset --node-prep-only: every node's own apt sources back, CA and hosts gone.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from kubeplay.console import Output
from kubeplay.deploy.context import DeployContext, build_context
from kubeplay.deploy.day2 import add_nodes, remove_nodes, reset_cluster
from kubeplay.deploy.steps import NODE_PREP, PREFLIGHT, check_nodes, deploy
from kubeplay.errors import DeployStopped, KubeplayError, StepFailed
from kubeplay.lab.nodes import Lab, unavailable_reason
from kubeplay.lab.record import default_state_root
from kubeplay.state import Ledger

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.conftest import skip_or_fail
from tests.e2e.conftest import unique_lab_name
from tests.e2e.deploy_support import (
    DOMAIN,
    HTTP_PORT,
    DeploySide,
    Unavailable,
    build_bundle,
    power_off_node,
    serving,
    start_node,
    up_lab,
    write_config,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]

# Steps a systemd-nspawn node completes; kubespray's preinstall then sets kernel parameters outside the
# node's network namespace (kernel.*, vm.*), which a container may not: the deploy must stop there, saying so.
CONTAINER_STEPS = [NODE_PREP, "os-bootstrap"]
STOP_STEP = "preinstall"


class RecordingOutput(Output):
    """Output that keeps the JSON events (what `--json-events` would print) for the test to read."""

    def __init__(self, screen: io.StringIO) -> None:
        super().__init__(json_events=True, console=Console(file=screen, width=200, force_terminal=False))
        self.events: list[dict[str, Any]] = []

    def event(self, kind: str, **data: Any) -> None:
        self.events.append({"event": kind, **data})


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build_bundle(tmp_path_factory.mktemp("deploy-bundle"))
    except Unavailable as exc:
        skip_or_fail(str(exc))


@pytest.fixture(scope="module")
def lab(bundle: Path) -> Iterator[Lab]:
    running = up_lab(3, name=unique_lab_name(), state_root=default_state_root())
    try:
        yield running
    finally:
        running.down()


@pytest.fixture(scope="module")
def side(lab: Lab, bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeploySide]:
    with serving(lab, bundle, tmp_path_factory.mktemp("deploy-side")) as running:
        yield running


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deploy state directory (inventory, ledger, logs), shared like /var/lib/kubeplay/deploy would be."""
    return tmp_path_factory.mktemp("deploy-state")


def make_context(
    side: DeploySide,
    lab: Lab,
    bundle: Path,
    nodes: list[str],
    work: Path,
    state: Path,
    host_vars: dict[str, dict[str, Any]] | None = None,
) -> tuple[DeployContext, RecordingOutput, io.StringIO]:
    work.mkdir(parents=True, exist_ok=True)
    screen = io.StringIO()
    out = RecordingOutput(screen)
    config = write_config(side, lab, nodes, work / "config.yaml", host_vars=host_vars)
    ctx = build_context(
        config, bundle, state_dir=state, ca_path=side.ca, out=out, exec_prefix=("ip", "netns", "exec", lab.netns)
    )
    return ctx, out, screen


def sh(lab: Lab, node: str, command: str, timeout: float = 120) -> str:
    result = lab.node(node).run(command, timeout=timeout)
    assert result.returncode == 0, f"{node}: {command}: {result.stderr}"
    return result.stdout


def assert_prepped(lab: Lab, side: DeploySide, node: str) -> None:
    """Node prep as a user would check it: bundle repo only (signed-by), CA trusted, registry name, time."""
    assert sh(lab, node, "ls /etc/apt/sources.list.d").split() == ["kubeplay-node.sources"]
    source = sh(lab, node, "cat /etc/apt/sources.list.d/kubeplay-node.sources")
    assert f"URIs: http://{side.ip}:{HTTP_PORT}/repos/apt/debian/bookworm" in source
    assert "Signed-By: /etc/kubeplay-node/kubeplay-archive-keyring" in source
    assert "kubeplay-disabled" in sh(lab, node, "ls /etc/apt")
    policy = sh(lab, node, "apt-get update -q >/dev/null && apt-cache policy chrony")
    assert f"http://{side.ip}:{HTTP_PORT}/repos/apt/debian/bookworm" in policy
    ca_line = side.ca.read_text().splitlines()[1]
    assert ca_line in sh(lab, node, "cat /etc/ssl/certs/ca-certificates.crt")
    assert f"{side.ip} {DOMAIN}" in sh(lab, node, "cat /etc/hosts")
    tracking = sh(
        lab, node, "for i in $(seq 60); do chronyc -n tracking | grep -q '^Reference ID.*(" + side.ip
        + ")' && break; sleep 1; done; chronyc -n tracking",
        timeout=90,
    )  # fmt: skip
    assert f"({side.ip})" in tracking, tracking  # chronyd on the node follows the deploy side
    # The package's own chrony.conf is kept for reset, unchanged.
    assert "kubeplay" not in sh(lab, node, "cat /etc/kubeplay-node/chrony.conf.orig")


def site_sources(side: DeploySide) -> dict[str, str]:
    """The apt sources a site's node would have (a local mirror); node prep sets them aside before apt reads them."""
    mirror = f"http://{side.ip}:{HTTP_PORT}/site-mirror/debian"  # never fetched: set aside first
    return {
        "/etc/apt/sources.list": f"deb {mirror} bookworm main\n",
        "/etc/apt/sources.list.d/site.sources": f"Types: deb\nURIs: {mirror}\nSuites: bookworm-updates\nComponents: main\n",
    }


def plant_site_sources(lab: Lab, side: DeploySide, node: str) -> None:
    for path, body in site_sources(side).items():
        lab.node(node).run(["sh", "-c", f"cat > {path}"], input=body, check=True)


def assert_unprepped(lab: Lab, side: DeploySide, node: str) -> None:
    """Node prep undone: the node's own apt sources back as they were, CA and hosts entry gone."""
    for path, body in site_sources(side).items():
        assert sh(lab, node, f"cat {path}") == body
    listing = sh(lab, node, "ls -A /etc/apt /etc/apt/sources.list.d /etc")
    assert "kubeplay-node.sources" not in listing and "kubeplay-disabled" not in listing
    assert "kubeplay-node" not in listing
    assert side.ca.read_text().splitlines()[1] not in sh(lab, node, "cat /etc/ssl/certs/ca-certificates.crt")
    assert DOMAIN not in sh(lab, node, "cat /etc/hosts")
    assert "kubeplay" not in sh(lab, node, "cat /etc/chrony/chrony.conf"), "chrony's own configuration is back"


def assert_container_stop(stop: DeployStopped, step: str, hosts: set[str]) -> None:
    reason = stop.reason
    assert reason.step == step and reason.host in hosts, stop.message
    assert reason.container == "systemd-nspawn", stop.message
    assert reason.limit is not None and reason.limit.startswith("kernel parameters"), stop.message
    assert f"stopped at {step}: {reason.host} is a systemd-nspawn container: kernel parameters" in stop.message
    assert f"task '{reason.task}' failed on {reason.host}" in stop.message
    assert f"full log: {stop.log}" in (stop.hint or "")
    assert reason.task in stop.log.read_text()  # the full log has the failing task


def test_wrong_ssh_password_and_key_are_named_and_never_printed(
    lab: Lab, side: DeploySide, bundle: Path, tmp_path: Path
) -> None:
    secret = f"Wr0ng-{time.time_ns()}-pass"
    wrong_key = tmp_path / "wrong_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong_key)], check=True, timeout=60
    )  # a key the nodes never saw
    host_vars = {"node1": {"ansible_ssh_pass": secret}, "node2": {"ansible_ssh_private_key_file": str(wrong_key)}}
    ctx, out, screen = make_context(
        side, lab, bundle, ["node0", "node1", "node2"], tmp_path / "work", tmp_path / "state", host_vars
    )
    with pytest.raises(StepFailed) as info:
        deploy(ctx)
    message = info.value.message
    assert message.startswith("preflight: cannot work on node1, node2:"), message
    assert "node1: wrong SSH password (check ansible_ssh_pass for this host)" in message
    assert "node2: SSH login refused" in message and "Permission denied (publickey" in message
    assert "node0" not in message
    assert "nothing was changed" in (info.value.hint or "")
    assert not Ledger(ctx.ws.ledger).steps  # no step ran
    assert "kubeplay-node.sources" not in sh(lab, "node0", "ls /etc/apt/sources.list.d")
    # The password is in config.yaml (the user's file) and nowhere kubeplay writes or prints.
    assert secret not in message + (info.value.hint or "") + screen.getvalue() + str(out.events)
    for path in ctx.ws.root.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"{path} holds the SSH password"


def test_deploy_resumes_after_a_node_dies_then_stops_where_a_container_must(
    lab: Lab, side: DeploySide, bundle: Path, state: Path, tmp_path: Path
) -> None:
    names = ["node0", "node1"]
    ctx, out, _ = make_context(side, lab, bundle, names, tmp_path / "work", state)
    failed: list[KubeplayError] = []

    def run() -> None:
        try:
            deploy(ctx)
        except KubeplayError as exc:
            failed.append(exc)

    for node in names:
        plant_site_sources(lab, side, node)
    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 600
    while not any(e.get("step") == "os-bootstrap" and e.get("status") == "started" for e in out.events):
        assert worker.is_alive() and time.monotonic() < deadline, f"os-bootstrap never started: {failed}"
        time.sleep(0.5)
    # Power node1 off while dpkg runs there (kubespray's system packages), the worst moment for a node.
    in_dpkg = False
    until = time.monotonic() + 90
    while not in_dpkg and worker.is_alive() and time.monotonic() < until:
        in_dpkg = lab.node("node1").run("pgrep -x dpkg", timeout=15).returncode == 0
        time.sleep(0.2)
    power_off_node(lab, "node1")
    worker.join(timeout=900)
    assert not worker.is_alive()
    assert len(failed) == 1 and isinstance(failed[0], DeployStopped), failed
    died = failed[0]
    assert died.reason.step == "os-bootstrap" and died.reason.host == "node1", died.message
    # A node powering off mid-task shows as unreachable, or as a module whose files vanished under it.
    assert " on node1: " in died.message and "resume at os-bootstrap" in (died.hint or "")
    assert died.reason.limit is None  # not blamed on the container
    assert {"event": "step", "command": "deploy", "step": NODE_PREP, "status": "done"}.items() <= next(
        e for e in out.events if e.get("step") == NODE_PREP and e.get("status") == "done"
    ).items()

    start_node(lab, "node1")
    interrupted = bool(sh(lab, "node1", "ls -A /var/lib/dpkg/updates").strip())
    print(f"\nnode1 lost power {'while dpkg ran' if in_dpkg else 'outside dpkg'}; dpkg interrupted: {interrupted}")
    out.events.clear()
    with pytest.raises(DeployStopped) as info:
        deploy(ctx)  # the same command again
    started = [e["step"] for e in out.events if e.get("event") == "step" and e.get("status") == "started"]
    # node-prep was done: preflight, then resumed at the step that failed
    assert started == [PREFLIGHT, "os-bootstrap", STOP_STEP], f"{info.value.message}\n{info.value.hint}"
    assert_container_stop(info.value, STOP_STEP, set(names))
    if interrupted:  # the interrupted package install was finished before kubespray ran again
        assert any(
            e.get("run") == "node-repair" and e.get("host") == "node1" and e.get("status") == "changed"
            for e in out.events
        ), [e for e in out.events if e.get("run") == "node-repair"]
    stopped = [e for e in out.events if e.get("event") == "step" and e.get("status") == "failed"]
    assert stopped and stopped[0]["step"] == STOP_STEP and stopped[0]["container"] == "systemd-nspawn"
    assert stopped[0]["error"] == info.value.message
    print(f"\nlab stopped: {info.value.message}\n  ({info.value.hint})")

    for node in names:
        assert_prepped(lab, side, node)
        # kubespray got into preinstall for real: its directories exist, and ip_forward (the node's own
        # network namespace, writable with the lab's nspawn options) is set.
        assert sh(lab, node, "test -d /etc/kubernetes/manifests && sysctl -n net.ipv4.ip_forward").strip() == "1"
        # kubespray's system packages came from the bundle repo (the node has no other).
        assert "Installed: (none)" not in sh(lab, node, "apt-cache policy socat ipvsadm")
    access = (side.workdir / "nginx-access.log").read_text()
    assert "/repos/apt/debian/bookworm/pool/" in access
    clients = {line.split()[0] for line in access.splitlines()}
    assert clients <= {n.ip for n in lab.nodes} | {side.ip}  # the nodes, and the deploy side's own probe


# dpkg's state after a cut mid-unpack, as dpkg leaves it: the package being unpacked is half-installed
# (reinstall required) and a package apt unpacked before it, which depends on it, is unpacked but cannot be
# configured. `dpkg --configure -a` alone fails there ("dependency problems - leaving unconfigured").
CUT_MID_UNPACK = r"""
import re
path = "/var/lib/dpkg/status"
text = open(path).read()
for name, status in (("libnetfilter-conntrack3", "install reinstreq half-installed"), ("conntrack", "install ok unpacked")):
    text, n = re.subn(r"(?m)^(Package: " + re.escape(name) + r"\n(?:(?!Package: ).*\n)*?)Status: .*$", r"\g<1>Status: " + status, text)
    assert n == 1, name
open(path, "w").write(text)
"""


def test_preflight_reinstalls_a_package_cut_mid_unpack(
    lab: Lab, side: DeploySide, bundle: Path, state: Path, tmp_path: Path
) -> None:
    ctx, out, _ = make_context(side, lab, bundle, ["node0", "node1"], tmp_path / "work", state)
    # conntrack and its library came from the bundle repo in os-bootstrap; cut node1's install of the library.
    assert "/repos/apt/" in sh(lab, "node1", "apt-cache policy libnetfilter-conntrack3")
    lab.node("node1").run(["python3", "-"], input=CUT_MID_UNPACK, check=True)
    assert "reinstalled" in sh(lab, "node1", "dpkg --audit")
    check_nodes(ctx, limit="node1")
    repair = [e for e in out.events if e.get("run") == "node-repair" and e.get("host") == "node1"]
    assert any(e.get("status") == "changed" for e in repair), repair
    assert sh(lab, "node1", "dpkg --audit") == ""
    query = "dpkg-query -W -f='${Package}=${db:Status-Abbrev}\\n' conntrack libnetfilter-conntrack3"
    status = [line.rstrip() for line in sh(lab, "node1", query).splitlines()]
    assert status == ["conntrack=ii", "libnetfilter-conntrack3=ii"], status


def test_add_node_remove_node_and_reset(lab: Lab, side: DeploySide, bundle: Path, state: Path, tmp_path: Path) -> None:
    # The operator adds node2 to config.yaml's inventory; add-node rebuilds the inventory from it.
    ctx, _, screen = make_context(side, lab, bundle, ["node0", "node1", "node2"], tmp_path / "work", state)
    assert "node2" not in (state / "inventory" / "hosts.yaml").read_text()
    plant_site_sources(lab, side, "node2")
    with pytest.raises(DeployStopped) as info:
        add_nodes(ctx, ["node2"])
    assert "node2" in (state / "inventory" / "hosts.yaml").read_text()
    assert info.value.reason.step == "scale", f"{info.value.message}\n{info.value.hint}"
    assert_container_stop(info.value, "scale", {"node2"})  # scale.yml --limit node2 reached preinstall
    assert_prepped(lab, side, "node2")

    remove_nodes(ctx, ["node2"])  # no control plane ever came up: nothing to drain, node2 is reset
    assert_unprepped(lab, side, "node2")
    assert "no control plane was deployed" in screen.getvalue()

    with pytest.raises(DeployStopped) as info:
        reset_cluster(ctx)  # kubespray's reset.yml re-runs preinstall, so it meets the same kernel limit
    assert_container_stop(info.value, "reset", {"node0", "node1", "node2"})
    assert_prepped(lab, side, "node0")  # a stopped reset left node prep in place

    done = reset_cluster(ctx, node_prep_only=True)
    assert done.hosts == ["node0", "node1", "node2"]
    for node in ("node0", "node1"):
        assert_unprepped(lab, side, node)
    assert not ctx.ws.ledger.exists()
