"""Node prep on 3 lab nodes vs the same on 1 node (target: 3 nodes take at most 1.5x the time of 1).

Fresh lab nodes for every measurement: node prep on one node alone, and on three others together, five
trials with alternating order (the median ratio is printed; other work on a 2-core machine makes single
runs noisy), timed only once every node has finished booting (a booting node's startup jobs would
otherwise land in whichever measurement comes first), against the same deploy side (real nginx + chronyd in the lab namespace, the signed Debian 12 repo built by
kubeplay.osrepo). SSH pipelining and ControlPersist are on, as in every kubeplay run. Needs root, the lab
prerequisites and ../shared; prints why and exits 0 when they are missing.

    .venv/bin/python bench/deploy.py
"""

from __future__ import annotations

import io
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.deploy_support import NODE_ROOTFS, DeploySide, Unavailable, build_bundle, serving, write_config

from kubeplay.console import Output
from kubeplay.deploy.context import build_context
from kubeplay.deploy.steps import deploy
from kubeplay.lab.nodes import Lab, unavailable_reason
from kubeplay.steps import Selection

TARGET = 1.5
TRIALS = 5


def cpu_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy so far (every core; /proc/stat, all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_until_booted(lab: Lab, names: list[str], timeout: float = 120) -> None:
    """Every node's systemd has finished its startup jobs ("running", or "degraded" with a unit failed)."""
    for name in names:
        state = lab.node(name).run("systemctl is-system-running --wait", timeout=timeout).stdout.strip()
        if state not in ("running", "degraded"):
            raise RuntimeError(f"{name} did not finish booting: {state!r}")


def slowest_steps(work: Path, count: int = 3) -> list[str]:
    """The longest waits between consecutive events of the run under `work` (what an outlier spent its time on)."""
    gaps: list[tuple[float, str]] = []
    for log in (work / "state" / "logs").glob("*.events.jsonl"):
        events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        for before, after in itertools.pairwise(events):
            seconds = (datetime.fromisoformat(after["time"]) - datetime.fromisoformat(before["time"])).total_seconds()
            what = f"{after.get('task', after['event'])} ({after['event']}, {after.get('host', '-')})"
            gaps.append((seconds, what))
    return [f"{s:.1f}s before {what}" for s, what in sorted(gaps, reverse=True)[:count]]


def node_prep_seconds(lab: Lab, side: DeploySide, bundle: Path, nodes: list[str], work: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds the machine was busy) for node prep on `nodes`."""
    work.mkdir(parents=True, exist_ok=True)
    config = write_config(side, lab, nodes, work / "config.yaml")
    ctx = build_context(
        config,
        bundle,
        state_dir=work / "state",
        ca_path=side.ca,
        out=Output(console=Console(file=io.StringIO())),
        exec_prefix=("ip", "netns", "exec", lab.netns),
    )
    started, busy = time.monotonic(), cpu_busy_seconds()
    deploy(ctx, Selection(only="node-prep"), preflight=False)
    return time.monotonic() - started, cpu_busy_seconds() - busy


def main() -> int:
    reason = unavailable_reason()
    if reason:
        print(f"bench/deploy.py skipped: {reason}")
        return 0
    rows: list[tuple[tuple[float, float], tuple[float, float]]] = []
    outliers: list[tuple[list[str], list[str]]] = []  # per trial: the slowest steps of each run
    with tempfile.TemporaryDirectory(prefix="kubeplay-bench-deploy-") as tmp:
        root = Path(tmp)
        try:
            bundle = build_bundle(root / "bundle")
        except Unavailable as exc:
            print(f"bench/deploy.py skipped: {exc}")
            return 0
        t0 = time.monotonic()
        # Fresh nodes for every measurement: TRIALS x (1 + 3); the order alternates so drift hits both sides.
        with Lab.up(
            4 * TRIALS, name=f"bd{int(time.time()) % 10000}", state_root=root / "labs", spec=NODE_ROOTFS
        ) as lab:
            lab_up = time.monotonic() - t0
            names = [n.name for n in lab.nodes]
            wait_until_booted(lab, names)
            with serving(lab, bundle, root / "side") as side:
                for trial in range(TRIALS):
                    group = names[4 * trial : 4 * trial + 4]
                    work = root / f"trial{trial}"
                    if trial % 2 == 0:  # each: (wall s, busy CPU s)
                        one = node_prep_seconds(lab, side, bundle, group[:1], work / "one")
                        three = node_prep_seconds(lab, side, bundle, group[1:], work / "three")
                    else:
                        three = node_prep_seconds(lab, side, bundle, group[1:], work / "three")
                        one = node_prep_seconds(lab, side, bundle, group[:1], work / "one")
                    rows.append((one, three))
                    outliers.append((slowest_steps(work / "one"), slowest_steps(work / "three")))
            lab.down()
    cores = os.cpu_count() or 1
    table = Table(
        "trial",
        "1 node (peer) s",
        "3 nodes s",
        "ratio",
        "CPU busy 1 / 3 nodes",
        title="kubeplay node prep (bench/deploy.py)",
    )
    for i, ((one, one_cpu), (three, three_cpu)) in enumerate(rows):
        busy = f"{one_cpu / one:.2f} / {three_cpu / three:.2f} of {cores} cores"
        table.add_row(str(i + 1), f"{one:.1f}", f"{three:.1f}", f"{three / one:.2f}x", busy)
    Console().print(table)
    print(f"lab up, {4 * TRIALS} nodes: {lab_up:.1f}s")
    for kind in (0, 1):  # a run far slower than the median of its kind says what it waited for
        typical = statistics.median(row[kind][0] for row in rows)
        for i, row in enumerate(rows):
            if row[kind][0] > 1.5 * typical:
                print(f"trial {i + 1}, {('1 node', '3 nodes')[kind]}: {row[kind][0]:.1f}s vs median {typical:.1f}s;")
                for line in outliers[i][kind]:
                    print(f"  {line}")
    ratio = statistics.median(three[0] / one[0] for one, three in rows)
    verdict = "meets" if ratio <= TARGET else "misses"
    print(f"node prep 3 nodes / 1 node = {ratio:.2f}x, median of {TRIALS} ({verdict} the {TARGET}x target)")
    # When the machine's cores are the limit, 3 nodes need at least 3x one node's CPU seconds on `cores`.
    floor = statistics.median(three[1] / cores / one[0] for one, three in rows)
    print(f"CPU floor on this machine: the 3-node run's CPU seconds alone take {floor:.2f}x the 1-node wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
