"""`kubeplay demo`: the air-gapped rehearsal end to end (simulated upstream, build, pack, lab nodes,
install, kubespray deploy, checks on every node, report). Entry point: `run_demo`."""

from kubeplay.lab.demo.pipeline import run_demo
from kubeplay.lab.demo.report import CheckResult, DemoReport, PhaseResult

__all__ = ["CheckResult", "DemoReport", "PhaseResult", "run_demo"]
