"""Two clusters from one deploy node, each with its config.yaml and state directory, on different served
versions: deploy, upgrade and reset of one act only on the hosts of its config and the ledger and record of
its state directory. The plays run for real (ansible-playbook, local connection) from kubespray-shaped trees
whose roles write which host ran them, with which kube_version and from which tree."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from tests.conftest import run_kubeplay
from tests.upgrade_fixture import add_version, config_file, trace_tree, write_record

from kubeplay.console import Output
from kubeplay.deploy.context import DeployContext, build_context
from kubeplay.deploy.day2 import reset_cluster
from kubeplay.deploy.record import read_record
from kubeplay.deploy.steps import NODE_PREP, deploy
from kubeplay.deploy.upgrade import prepare_upgrade, upgrade
from kubeplay.deploy.versions import ServedPaths, choose_bundle
from kubeplay.state import Ledger, input_hash

pytestmark = pytest.mark.slow


def cluster(base: Path, name: str, hosts: list[str], served: ServedPaths, version: str | None = None) -> DeployContext:
    cfg = config_file(base / name / "config.yaml", hosts, local=True, trace_file=str(base / name / "trace"))
    state = base / name / "state"
    facts = choose_bundle(cfg, state, served, version=version)
    out = Output(console=Console(file=io.StringIO(), width=200))
    return build_context(cfg, facts, state_dir=state, ca_path=base / "rootCA.crt", out=out)


def trace(base: Path, name: str) -> list[str]:
    """What ran for cluster `name` since the last call: "<word> <host> <kube_version> <tree>" lines."""
    path = base / name / "trace"
    lines = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return lines


def deploy_without_node_prep(ctx: DeployContext) -> None:
    # node prep is kubeplay's own playbook for real nodes (apt sources, CA, chrony): here it is recorded as done
    Ledger(ctx.ws.ledger).mark_done(NODE_PREP, input_hash({"step": NODE_PREP, "inputs": ctx.inputs_digest}))
    deploy(ctx, preflight=False)


def test_two_clusters_on_two_versions_never_touch_each_other(tmp_path: Path) -> None:
    (tmp_path / "rootCA.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    trees = tmp_path / "trees"
    served = ServedPaths(served_dir=tmp_path / "served")
    add_version(served.served, "1.34.3", "v2.30.0", trace_tree(trees, "v2.30.0"), installed_at="2026-12-01")
    add_version(served.served, "1.35.4", "v2.31.0", trace_tree(trees, "v2.31.0"), installed_at="2026-12-02")

    a = cluster(tmp_path, "a", ["a1", "a2"], served, version="1.34.3")
    b = cluster(tmp_path, "b", ["b1"], served, version="1.35.4")
    deploy_without_node_prep(a)
    deploy_without_node_prep(b)
    assert sorted(trace(tmp_path, "a")) == ["node a1 1.34.3 v2.30.0", "node a2 1.34.3 v2.30.0"]
    assert trace(tmp_path, "b") == ["node b1 1.35.4 v2.31.0"]
    for name, kube in (("a", "1.34.3"), ("b", "1.35.4")):
        record = read_record(tmp_path / name / "state")
        assert record is not None and (record.kube_version, record.complete) == (kube, True)
    inv_a = (tmp_path / "a" / "state" / "inventory" / "hosts.yaml").read_text()
    assert "a1" in inv_a and "b1" not in inv_a

    # Later commands find each cluster's own version without being told.
    assert cluster(tmp_path, "a", ["a1", "a2"], served).bundle.kube_version == "1.34.3"
    assert cluster(tmp_path, "b", ["b1"], served).bundle.kube_version == "1.35.4"

    # Upgrade a: a's hosts, the new tree, a's own upgrade ledger and record; b unchanged.
    b_ledger = (tmp_path / "b" / "state" / "ledger.json").read_bytes()
    b_record = (tmp_path / "b" / "state" / "cluster.json").read_bytes()
    u = prepare_upgrade(
        a.config_path, "1.35.4", state_dir=a.ws.root, served=served, out=a.out, ca_path=a.ca_path, probe=False
    )
    results, complete = upgrade(u, preflight=False)
    assert complete
    assert [r.name for r in results if r.ran] == ["node-prep", "prepare", "control-plane", "workers"]
    ran_a = trace(tmp_path, "a")
    assert {line.split()[1] for line in ran_a} == {"a1", "a2"}
    assert {" ".join(line.split()[2:]) for line in ran_a} == {"1.35.4 v2.31.0"}
    assert [line.split()[0] for line in ran_a[:2]] == ["upgrade-prepare", "upgrade-prepare"]
    assert trace(tmp_path, "b") == []
    record = read_record(a.ws.root)
    assert record is not None and (record.kube_version, record.kubespray_version, record.by) == (
        "1.35.4",
        "v2.31.0",
        "upgrade",
    )
    assert record.history[-1]["kube_version"] == "1.34.3"
    assert (a.ws.root / "ledger-upgrade-1.35.4.json").is_file()
    assert not (tmp_path / "b" / "state" / "ledger-upgrade-1.35.4.json").exists()
    assert (tmp_path / "b" / "state" / "ledger.json").read_bytes() == b_ledger
    assert (tmp_path / "b" / "state" / "cluster.json").read_bytes() == b_record

    # Reset a: a's hosts only, from a's (now upgraded) tree; a's ledgers and record go, b's stay.
    a_now = cluster(tmp_path, "a", ["a1", "a2"], served)
    assert a_now.bundle.kube_version == "1.35.4"
    reset_cluster(a_now, keep_node_prep=True)
    assert sorted(trace(tmp_path, "a")) == ["reset a1 1.35.4 v2.31.0", "reset a2 1.35.4 v2.31.0"]
    assert trace(tmp_path, "b") == []
    assert not list(a.ws.root.glob("ledger*.json")) and read_record(a.ws.root) is None
    assert (tmp_path / "b" / "state" / "ledger.json").read_bytes() == b_ledger
    assert json.loads((tmp_path / "b" / "state" / "cluster.json").read_bytes())["kube_version"] == "1.35.4"


def test_upgrade_from_the_cli_stops_resumes_and_records_the_new_version(tmp_path: Path) -> None:
    ca = tmp_path / "rootCA.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    served = tmp_path / "served"
    old = add_version(served, "1.35.3", "v2.31.0", trace_tree(tmp_path / "trees", "old"), installed_at="2026-12-01")
    add_version(served, "1.35.4", "v2.31.0", trace_tree(tmp_path / "trees", "new"), installed_at="2026-12-02")
    trace_file = tmp_path / "c" / "trace"
    cfg = config_file(tmp_path / "c" / "config.yaml", ["c1", "c2"], local=True, trace_file=str(trace_file), serial=1)
    state = tmp_path / "c" / "state"
    write_record(state, "1.35.3", "v2.31.0", old)
    common = ["-c", str(cfg), "--state-dir", str(state), "--served", str(served), "--ca", str(ca)]
    # preflight's node repair would run on this machine itself: skipped; node prep is not needed (same repos)
    argv = ["--json-events", "upgrade", *common, "--to", "1.35.4", "--skip-preflight"]

    Path(f"{trace_file}.fail-upgrade-workers").touch()
    first = run_kubeplay(*argv, timeout=600)
    assert first.returncode == 1, first.stderr
    events = [json.loads(line) for line in first.stdout.splitlines()]
    steps = [(e["step"], e["status"]) for e in events if e["event"] == "step" and e["status"] != "started"]
    assert steps == [("node-prep", "done"), ("prepare", "done"), ("control-plane", "done"), ("workers", "failed")]
    failed = events[-1]
    assert failed["command"] == "upgrade" and failed["host"] in ("c1", "c2") and "resume at workers" in failed["hint"]
    assert "OS repos and their key unchanged from Kubernetes 1.35.3" in first.stderr
    record = read_record(state)
    assert record is not None and (record.kube_version, record.upgrading_to) == ("1.35.3", "1.35.4")
    extravars = [json.loads(p.read_text()) for p in (state / "runs").glob("*-upgrade-workers/env/extravars")]
    assert extravars == [{"serial": 1, "upgrade_node_confirm": False, "upgrade_node_pause_seconds": 0}]

    refused = run_kubeplay("deploy", *common)
    assert refused.returncode == 2
    assert "is being upgraded from Kubernetes 1.35.3 to 1.35.4" in " ".join(refused.stderr.split())

    Path(f"{trace_file}.fail-upgrade-workers").unlink()
    trace_file.unlink()
    second = run_kubeplay(*argv, timeout=600)
    assert second.returncode == 0, second.stderr
    ran = [json.loads(line) for line in second.stdout.splitlines()]
    assert [e["step"] for e in ran if e.get("status") == "done"] == ["workers"]
    assert {line.split()[0] for line in trace_file.read_text().splitlines()} == {"upgrade-workers"}
    assert "the cluster runs Kubernetes 1.35.4" in " ".join(second.stderr.split())
    record = read_record(state)
    assert record is not None and (record.kube_version, record.upgrading_to, record.by) == ("1.35.4", None, "upgrade")

    again = run_kubeplay(*argv)
    assert again.returncode == 2
    assert "the cluster already runs Kubernetes 1.35.4" in " ".join(again.stderr.split())
