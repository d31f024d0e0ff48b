"""What `kubeplay demo` found: phases with their times, checks per node, where the lab stopped; tables of it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from kubeplay.console import Cell, Output, Table, human_bytes

PhaseStatus = Literal["ok", "failed", "stopped", "skipped"]


@dataclass
class PhaseResult:
    """One phase of the demo: its name, wall time, outcome, and a one-line note (what it did, or why not)."""

    name: str
    seconds: float
    status: PhaseStatus
    detail: str = ""
    within: str | None = None  # a step inside another phase (not added to the total again)


@dataclass
class CheckResult:
    """One proof on one node: passed or not, and the evidence (or what was wrong) in one line."""

    check: str
    node: str
    passed: bool
    detail: str = ""


@dataclass
class Built:
    """What the build produced."""

    kubespray: str = ""
    kube_version: str = ""
    files: int = 0
    files_bytes: int = 0
    images: int = 0
    blobs: int = 0
    blobs_bytes: int = 0
    os_packages: int = 0
    os_bytes: int = 0
    wheels: int = 0
    bundle_bytes: int = 0
    archive: str = ""
    archive_bytes: int = 0


@dataclass
class DemoReport:
    """The whole demo run. `ok` is true when nothing failed and every check passed."""

    workdir: str
    nodes: int
    built: Built = field(default_factory=Built)
    phases: list[PhaseResult] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    stopped_at: str | None = None
    stop_reason: str | None = None
    error: str | None = None
    kept: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        failed_phase = any(p.status == "failed" for p in self.phases)
        return self.error is None and not failed_phase and bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def total_seconds(self) -> float:
        return sum(p.seconds for p in self.phases if p.within is None)

    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ok": self.ok, "total_seconds": round(self.total_seconds, 1)}, indent=2)

    def save(self, path: Path) -> Path:
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path


_STATUS_CELL = {
    "ok": Cell("ok", "ok"),
    "failed": Cell("FAILED", "failed"),
    "stopped": Cell("stopped", "stopped"),
    "skipped": "skipped",
}


def built_table(b: Built) -> Table:
    table = Table(("what", "built"), title="built", header=False, boxed=False)
    table.add("kubespray", b.kubespray)
    table.add("kubernetes", b.kube_version)
    table.add("files", f"{b.files} ({human_bytes(b.files_bytes)})")
    table.add("images (amd64)", f"{b.images}, {b.blobs} unique blobs ({human_bytes(b.blobs_bytes)})")
    table.add("Debian 12 packages", f"{b.os_packages} ({human_bytes(b.os_bytes)})")
    table.add("wheels", str(b.wheels))
    table.add("bundle", human_bytes(b.bundle_bytes))
    table.add("archive", f"{b.archive} ({human_bytes(b.archive_bytes)})" if b.archive else "-")
    return table


def phases_table(phases: list[PhaseResult]) -> Table:
    table = Table(("phase", "time", "result", "note"), title="phases")
    for p in phases:
        table.add(p.name, f"{p.seconds:6.1f}s", _STATUS_CELL[p.status], p.detail)
    table.add(Cell("total", "running"), f"{sum(p.seconds for p in phases if p.within is None):6.1f}s", "", "")
    return table


def checks_table(checks: list[CheckResult]) -> Table:
    """One row per check, one column per node: pass/FAIL; failures are listed below with their evidence."""
    nodes = list(dict.fromkeys(c.node for c in checks))
    table = Table(("check", *nodes), title="checks")
    for name in dict.fromkeys(c.check for c in checks):
        cells: list[object] = []
        for node in nodes:
            found = [c for c in checks if c.check == name and c.node == node]
            cells.append(
                "-" if not found else Cell("pass", "ok") if all(c.passed for c in found) else Cell("FAIL", "failed")
            )
        table.add(name, *cells)
    return table


def render_report(report: DemoReport, out: Output) -> None:
    """Print the report: built, phases, checks (failures with evidence), where the lab stopped, the verdict."""
    out.line()
    out.table(built_table(report.built))
    out.table(phases_table(report.phases))
    if report.checks:
        out.table(checks_table(report.checks))
        for c in report.failed_checks():
            out.mark("failed", f"FAIL {c.check} on {c.node}: {c.detail}", always=True)
    if report.stopped_at:
        out.mark(
            "stopped", f"the lab stopped at kubespray phase {report.stopped_at}: {report.stop_reason}", always=True
        )
    if report.error:
        out.mark("failed", f"demo failed: {report.error}", always=True)
    if report.kept:
        out.line("kept (--keep): " + "; ".join(report.kept))
    passed = sum(1 for c in report.checks if c.passed)
    out.mark(
        "ok" if report.ok else "failed",
        f"{'PASS' if report.ok else 'FAIL'}: {passed}/{len(report.checks)} checks passed on {report.nodes} lab nodes "
        f"in {(report.wall_seconds or report.total_seconds) / 60:.1f} min",
        always=True,
    )
