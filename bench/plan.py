"""Planning speed: `make_plan` for amd64+arm64 of the newest kubespray in ../shared, against the named peer,
kubespray's own contrib/offline/generate_list.sh (ansible-playbook rendering its two lists), in one run.

The peer renders one arch per run (the host's) and ignores `enabled`, so it does less work than the plan;
the ratio is peer seconds / kubeplay seconds. Target: a two-arch plan under 1 s. Never asserted anywhere.

    .venv/bin/python bench/plan.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubeplay.catalog.examples import newest_release_archive, shared_dir
from kubeplay.catalog.source import load_tree

CHILD = """
import sys, time
started = time.perf_counter()
from pathlib import Path
from kubeplay.catalog.planner import make_plan
from kubeplay.catalog.source import load_tree
from kubeplay.config.bundle import BundleSpec
imported = time.perf_counter()
tree = load_tree(Path(sys.argv[1]))
spec = BundleSpec.model_validate({"kubespray": {"version": tree.version, "source": sys.argv[1]}, "arches": ["amd64", "arm64"]})
plan = make_plan(spec, tree)
done = time.perf_counter()
print(imported - started, done - imported, len(plan.files), len(plan.images))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    archive = newest_release_archive()
    if archive is None:
        print(f"bench/plan.py: skipped: no kubespray release under {shared_dir()}/upstream/kubespray")
        return
    ansible_playbook = Path(sys.executable).parent / "ansible-playbook"
    with tempfile.TemporaryDirectory(prefix="kubeplay-bench-plan-") as tmp_name:
        tmp = Path(tmp_name)
        tree = load_tree(archive, cache_dir=tmp / "cache")

        # kubeplay: a fresh process per run, so every run parses the YAML and compiles the templates again.
        plan_times, import_times = [], []
        counts = ""
        for _ in range(args.runs):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(tree.root)], capture_output=True, text=True, timeout=120, check=True
            ).stdout.split()
            import_times.append(float(out[0]))
            plan_times.append(float(out[1]))
            counts = f"{out[2]} files, {out[3]} images"
        kubeplay_s = statistics.median(plan_times)

        # The peer: generate_list.sh of the same release, on a copy of the tree (it writes into it).
        peer_times = []
        env = {
            **os.environ,
            "PATH": f"{ansible_playbook.parent}:{os.environ.get('PATH', '')}",
            "ANSIBLE_HOME": str(tmp / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
            "ANSIBLE_CACHE_PLUGIN": "memory",
        }
        for run in range(max(1, args.runs // 2)):
            copy = tmp / f"peer-{run}"
            shutil.copytree(tree.root, copy, symlinks=True)
            started = time.perf_counter()
            subprocess.run(
                ["bash", "contrib/offline/generate_list.sh", "-e", f"ansible_python_interpreter={sys.executable}"],
                cwd=copy,
                env=env,
                capture_output=True,
                timeout=600,
                check=True,
            )
            peer_times.append(time.perf_counter() - started)
        peer_s = statistics.median(peer_times)

    print(f"kubespray release: {archive.name} ({tree.version})")
    print(
        f"kubeplay make_plan, amd64+arm64, fresh process: {kubeplay_s * 1000:.0f} ms median of {args.runs} "
        f"({counts}; imports {statistics.median(import_times) * 1000:.0f} ms more) — target < 1000 ms"
    )
    print(f"peer generate_list.sh (ansible-playbook, one arch): {peer_s * 1000:.0f} ms median of {len(peer_times)}")
    print(f"ratio peer/kubeplay: {peer_s / kubeplay_s:.1f}x")


if __name__ == "__main__":
    main()
