"""The patch upgrade rehearsed on lab nodes, as `kubeplay demo --upgrade --upgrade-path patch` runs it:
kubespray v2.31.0 at the Kubernetes patch before its default, built, installed on node0 and deployed to the
container limit; `status --inventory` carried out; the default patch built against it as a delta, carried
in and installed beside the first; every file and image of both versions fetched from the cluster node as
kubespray fetches them, the union repo verified by apt; `kubeplay upgrade` run to the container limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import require_shared
from tests.e2e.conftest import INSTALL_MARKS, require_bookworm_mirror

from kubeplay.console import Output
from kubeplay.lab.demo.upgrade import run_upgrade_demo

pytestmark = INSTALL_MARKS


def test_the_patch_upgrade_runs_on_lab_nodes_with_both_versions_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_shared("upstream", "kubespray", "kubespray-v2.31.0.tar.gz")
    require_bookworm_mirror()
    monkeypatch.setenv("KUBEPLAY_WHEELS", "1")  # the deploy node's venv comes from the bundle (tests default to 0)
    report = run_upgrade_demo(tmp_path / "demo", out=Output(quiet=True), nodes=2, path="patch")
    failed = [f"{c.node}: {c.check}: {c.detail}" for c in report.failed_checks()]
    assert report.error is None and not failed, (report.error, failed)
    names = [p.name for p in report.phases]
    assert any(n.startswith("kubeplay build --base") for n in names)
    checks = {c.check for c in report.checks}
    assert any("[1.35.3]" in c for c in checks) and any("[1.35.4]" in c for c in checks)
    assert "served OS repo verifies after the delta (apt-get update)" in checks
    # upgrade ran (its own steps) and stopped where a container stops kubespray, saying why
    assert report.stopped_at is not None and report.stopped_at.startswith("upgrade:"), report.stopped_at
    assert report.stop_reason and "container" in report.stop_reason
    saved = json.loads((tmp_path / "demo" / "report-upgrade-patch.json").read_text())
    assert saved["stopped_at"] == report.stopped_at
    delta = next(p for p in report.phases if p.name.startswith("kubeplay build --base"))
    assert "delta" in delta.detail and "Kubernetes 1.35.4" in delta.detail
    with pytest.raises(StopIteration):
        next(p for p in report.phases if p.status == "failed")
