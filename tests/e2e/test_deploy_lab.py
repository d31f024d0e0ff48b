"""kubeplay deploy against air-gapped lab nodes: preflight, node prep, then kubespray's real cluster.yml
(the newest release in ../shared) phase by phase, until the first phase a systemd-nspawn container cannot
complete — where the test stops and states why. Then node prep is undone as `kubeplay reset` does.

The deploy side is the lab namespace on this machine (tests/e2e/deploy_support.py): real nginx serving a
signed Debian 12 repo built by kubeplay.osrepo, real chronyd. Nodes have no route anywhere else, so every
package kubespray installs comes from that repo.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from kubeplay.console import Output
from kubeplay.deploy.context import NODE_GROUPS, build_context
from kubeplay.deploy.runner import Playbook, raise_for_result, run_playbook
from kubeplay.deploy.steps import PLAYBOOKS, deploy
from kubeplay.errors import StepFailed
from kubeplay.lab.nodes import Lab, unavailable_reason
from kubeplay.lab.rootfs import RootfsSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.e2e.deploy_support import DOMAIN, HTTP_PORT, Unavailable, build_bundle, serving, write_config

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]

# Debian's minimal install has every Priority: required package (tzdata among them), and the bundle's repo
# leaves those out as the baseline; the lab's default rootfs (mmdebstrap variant apt) has only Essential ones.
NODE_ROOTFS = RootfsSpec(variant="required")
# Phases a container can run end to end; the first one after these is expected to stop, with its reason printed.
# preinstall stops in this lab: its nodes have no nameserver in /etc/resolv.conf (kubespray asserts one).
CONTAINER_PHASES = ["node-prep", "os-bootstrap"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build_bundle(tmp_path_factory.mktemp("deploy-bundle"))
    except Unavailable as exc:
        pytest.skip(str(exc))


def sh(lab: Lab, node: str, command: str, timeout: float = 120) -> str:
    result = lab.node(node).run(command, timeout=timeout)
    assert result.returncode == 0, f"{node}: {command}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def lab(make_lab: Callable[..., Lab]) -> Lab:
    return make_lab(2, spec=NODE_ROOTFS)


def test_node_prep_then_kubespray_phases_on_lab_nodes(lab: Lab, bundle: Path, tmp_path: Path) -> None:
    names = [n.name for n in lab.nodes]
    screen = io.StringIO()
    out = Output(console=Console(file=screen, width=160, force_terminal=False))
    with serving(lab, bundle, tmp_path / "deploy-side") as side:
        config = write_config(side, lab, names, tmp_path / "config.yaml")
        ctx = build_context(
            config,
            bundle,
            state_dir=tmp_path / "state",
            ca_path=side.ca,
            out=out,
            exec_prefix=("ip", "netns", "exec", lab.netns),
        )
        done = deploy(ctx, to_step=CONTAINER_PHASES[-1])
        assert [o.name for o in done if o.ran] == CONTAINER_PHASES

        repo_url = f"http://{side.ip}:{HTTP_PORT}/repos/apt/debian/bookworm"
        ca_line = side.ca.read_text().splitlines()[1]
        for node in names:
            assert sh(lab, node, "ls /etc/apt/sources.list.d").split() == ["kubeplay-node.sources"]
            assert "kubeplay-disabled" in sh(lab, node, "ls /etc/apt")
            policy = sh(lab, node, "apt-get update -q >/dev/null && apt-cache policy chrony socat ipvsadm")
            assert repo_url in policy
            assert "Installed: (none)" not in policy.split("socat:")[1]  # kubespray's system packages got installed
            assert ca_line in sh(lab, node, "cat /etc/ssl/certs/ca-certificates.crt")
            assert f"{side.ip} {DOMAIN}" in sh(lab, node, "cat /etc/hosts")
            tracking = sh(
                lab, node, "for i in $(seq 60); do chronyc -n tracking | grep -q '^Reference ID.*(" + side.ip
                + ")' && break; sleep 1; done; chronyc -n tracking",
                timeout=90,
            )  # fmt: skip
            assert f"({side.ip})" in tracking, tracking
        access = (side.workdir / "nginx-access.log").read_text()
        assert "/repos/apt/debian/bookworm/pool/" in access  # packages were fetched from the deploy side
        assert {line.split()[0] for line in access.splitlines()} <= {n.ip for n in lab.nodes} | {
            side.ip
        }  # + its own probe

        # The rest of cluster.yml: containers cannot run all of it; the first phase that stops says why.
        with pytest.raises(StepFailed) as info:
            deploy(ctx)
        stopped_at = info.value.message.split(":", 1)[0]
        print(f"\nlab stopped at phase {stopped_at!r}: {info.value.message}\n  ({info.value.hint})")
        assert stopped_at not in CONTAINER_PHASES
        assert " on " in info.value.message and "full log:" in (info.value.hint or "")
        assert "resume at " + stopped_at in (info.value.hint or "")

        # `kubeplay reset`'s second half: node prep undone, the node's own apt sources back.
        undo = Playbook(
            "node-prep-undo",
            PLAYBOOKS / "nodeprep-undo.yml",
            ctx.kubespray_dir,
            extravars={"kubeplay_targets": NODE_GROUPS},
            limit=names[-1],
            kubespray_dir=ctx.kubespray_dir,
        )
        raise_for_result(run_playbook(ctx.ws, ctx.inventory, undo, out))
        node = names[-1]
        sources = sh(lab, node, "ls /etc/apt/sources.list.d /etc/apt")
        assert "kubeplay-node.sources" not in sources and "kubeplay-disabled" not in sources
        assert ca_line not in sh(lab, node, "cat /etc/ssl/certs/ca-certificates.crt")
        assert DOMAIN not in sh(lab, node, "cat /etc/hosts")
        assert "kubeplay-node" not in sh(lab, node, "ls /etc")
