"""What `kubeplay demo` prints: phase lines and the report, as a user reads them (no markup leaking through)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from kubeplay.console import Output
from kubeplay.errors import StepFailed
from kubeplay.lab.demo.commands import PhaseClock
from kubeplay.lab.demo.report import Built, CheckResult, DemoReport, PhaseResult, render_report


def recording(*, quiet: bool = False) -> Output:
    return Output(quiet=quiet, console=Console(file=io.StringIO(), width=160, color_system=None))


def printed(out: Output) -> str:
    file = out.console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def test_phase_lines_show_name_detail_and_time_without_markup() -> None:
    report = DemoReport(workdir="/w", nodes=2)
    out = recording()
    clock = PhaseClock(report, out)
    with clock.phase("kubeplay build") as note:
        note.detail = "fetched 1.0 MiB from [::1]:5000"
    with pytest.raises(StepFailed), clock.phase("kubeplay pack"):
        raise StepFailed("pack failed (exit 1)")
    text = printed(out)
    assert "▶ kubeplay build" in text and "▶ kubeplay pack" in text
    assert "kubeplay build: fetched 1.0 MiB from [::1]:5000 (" in text  # brackets in a detail stay as written
    assert "[bold]" not in text and "[dim]" not in text and "[/]" not in text
    assert [(p.name, p.status) for p in report.phases] == [("kubeplay build", "ok"), ("kubeplay pack", "failed")]
    assert report.phases[1].detail == "pack failed (exit 1)"


def test_quiet_silences_phase_lines() -> None:
    out = recording(quiet=True)
    with PhaseClock(DemoReport(workdir="/w", nodes=2), out).phase("lab up") as note:
        note.detail = "2 nodes"
    assert printed(out) == ""


def failed_report() -> DemoReport:
    return DemoReport(
        workdir="/w",
        nodes=3,
        built=Built(kubespray="v2.31.0 (kubespray-2.31.0.tar.gz)", kube_version="1.33.4", files=12),
        phases=[
            PhaseResult("kubeplay build", 61.0, "ok", "fetched 2.1 GiB"),
            PhaseResult("  node-prep", 4.5, "ok", within="deploy"),
            PhaseResult("kubeplay deploy", 300.0, "stopped", "stopped at kubernetes/control-plane"),
        ],
        checks=[
            CheckResult("no route out", "node1", True),
            CheckResult("no route out", "node2", True),
            CheckResult("images pull from the bundle", "node1", True),
            CheckResult("images pull from the bundle", "node2", False, "pause:3.10: not found in [registry]"),
        ],
        stopped_at="kubernetes/control-plane",
        stop_reason="kubeadm init needs a kernel the container shares",
        wall_seconds=480.0,
    )


@pytest.mark.parametrize("quiet", [False, True])
def test_report_names_phases_checks_failures_and_the_verdict_even_quiet(quiet: bool) -> None:
    out = recording(quiet=quiet)
    render_report(failed_report(), out)
    text = printed(out)
    assert "kubespray" in text and "v2.31.0 (kubespray-2.31.0.tar.gz)" in text
    for phase in ("kubeplay build", "node-prep", "kubeplay deploy", "stopped", "total"):
        assert phase in text
    assert " 361.0s" in text  # the total leaves out steps counted inside another phase
    checks = next(line for line in text.splitlines() if "images pull from the bundle" in line and "FAIL" in line)
    assert "pass" in checks  # node1 passed, node2 failed: one row, one column per node
    assert "FAIL images pull from the bundle on node2: pause:3.10: not found in [registry]" in text
    assert "the lab stopped at kubespray phase kubernetes/control-plane: kubeadm init needs a kernel" in text
    assert "FAIL: 3/4 checks passed on 3 lab nodes in 8.0 min" in text
    assert "[green]" not in text and "[red]" not in text and "[bold]" not in text


def test_a_passing_report_says_pass() -> None:
    report = DemoReport(workdir="/w", nodes=2, checks=[CheckResult("no route out", "node1", True)])
    report.phases.append(PhaseResult("checks on every node", 1.0, "ok"))
    report.wall_seconds = 90.0
    out = recording()
    render_report(report, out)
    assert "PASS: 1/1 checks passed on 2 lab nodes in 1.5 min" in printed(out)
