"""Node prep on 3 lab nodes vs the same on 1 node (target: 3 nodes take at most 1.5x the time of 1).

Four fresh lab nodes: node prep runs on node0 alone, then on node1..node3 together, each from a clean node,
against the same deploy side (real nginx + chronyd in the lab namespace, the signed Debian 12 repo built by
kubeplay.osrepo). SSH pipelining and ControlPersist are on, as in every kubeplay run. Needs root, the lab
prerequisites and ../shared; prints why and exits 0 when they are missing.

    .venv/bin/python bench/deploy.py
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.deploy_support import DeploySide, Unavailable, build_bundle, serving, write_config

from kubeplay.console import Output
from kubeplay.deploy.context import build_context
from kubeplay.deploy.steps import deploy
from kubeplay.lab.nodes import Lab, unavailable_reason
from kubeplay.lab.rootfs import RootfsSpec

TARGET = 1.5


def node_prep_seconds(lab: Lab, side: DeploySide, bundle: Path, nodes: list[str], work: Path) -> float:
    config = write_config(side, lab, nodes, work / "config.yaml")
    ctx = build_context(
        config,
        bundle,
        state_dir=work / "state",
        ca_path=side.ca,
        out=Output(console=Console(file=io.StringIO())),
        exec_prefix=("ip", "netns", "exec", lab.netns),
    )
    started = time.monotonic()
    deploy(ctx, only="node-prep", preflight=False)
    return time.monotonic() - started


def main() -> int:
    reason = unavailable_reason()
    if reason:
        print(f"bench/deploy.py skipped: {reason}")
        return 0
    with tempfile.TemporaryDirectory(prefix="kubeplay-bench-deploy-") as tmp:
        root = Path(tmp)
        try:
            bundle = build_bundle(root / "bundle")
        except Unavailable as exc:
            print(f"bench/deploy.py skipped: {exc}")
            return 0
        t0 = time.monotonic()
        with Lab.up(
            4, name=f"bd{int(time.time()) % 10000}", state_root=root / "labs", spec=RootfsSpec(variant="required")
        ) as lab:
            lab_up = time.monotonic() - t0
            names = [n.name for n in lab.nodes]
            with serving(lab, bundle, root / "side") as side:
                one = node_prep_seconds(lab, side, bundle, names[:1], root / "one")
                three = node_prep_seconds(lab, side, bundle, names[1:4], root / "three")
            lab.down()
    table = Table("measure", "seconds", title="kubeplay node prep (bench/deploy.py)")
    table.add_row("lab up, 4 nodes", f"{lab_up:.1f}")
    table.add_row("node prep, 1 node (peer)", f"{one:.1f}")
    table.add_row("node prep, 3 nodes", f"{three:.1f}")
    Console().print(table)
    ratio = three / one
    verdict = "meets" if ratio <= TARGET else "misses"
    print(f"node prep 3 nodes / 1 node = {ratio:.2f}x ({verdict} the {TARGET}x target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
