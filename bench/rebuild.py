"""A second `kubeplay build` with nothing changed: how long the no-op takes (target: under 2 s for 60 items).

Builds a 60-item plan (40 files, 20 two-arch images) from the simulator with the real CLI, then runs the
same command again and times it end to end (process start, spec, kubespray check, plan, skip checks,
manifest, SHA256SUMS). Peers measured in the same run: the first build, and `sha256sum -c SHA256SUMS` over
the bundle (what re-reading every byte would cost). With ../shared present, the same for a real kubespray
release with the real planner. Never asserted anywhere.

    .venv/bin/python bench/rebuild.py [--files 40] [--images 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.build_fixture import (  # noqa: E402
    file_artifact,
    image_artifact,
    kubespray_archive,
    make_plan,
    plan_json,
    write_spec,
)

from kubeplay.catalog.planner import make_plan as real_make_plan  # noqa: E402
from kubeplay.catalog.source import load_tree  # noqa: E402
from kubeplay.config.bundle import BundleSpec  # noqa: E402
from kubeplay.lab.upstream import UpstreamSimulator  # noqa: E402

DRIVER = """
import sys
import kubeplay.assemble.pipeline as pipeline
from kubeplay.catalog.model import Plan
plan = Plan.model_validate_json(open(sys.argv[1]).read())
pipeline.cached_plan = lambda spec, tree, identity, state: plan
sys.argv = ["kubeplay", *sys.argv[2:]]
from kubeplay.cli.app import main
main()
"""


def timed(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, cwd=cwd, env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"{argv[:4]} failed:\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def report(label: str, items: int, first: float, second: float, sums: float) -> dict[str, object]:
    print(
        f"{label}: {items} items | first build {first:.2f}s | re-run {second:.2f}s "
        f"({first / second:.1f}x faster than the first build; sha256sum -c of the bundle takes {sums:.2f}s, "
        f"{sums / second:.1f}x the re-run)"
    )
    return {
        "label": label,
        "items": items,
        "first_s": round(first, 2),
        "rerun_s": round(second, 2),
        "sha256sum_check_s": round(sums, 2),
        "under_2s": second < 2.0,
    }


def synthetic(tmp: Path, sim: UpstreamSimulator, n_files: int, n_images: int) -> dict[str, object]:
    files = []
    for i in range(n_files):
        data = os.urandom(256 * 1024 + i * 4096)
        url = f"https://dl.k8s.io/bench-rebuild/v1/bin{i:02d}"
        sim.add_file(url, data)
        files.append(file_artifact(url, data, name=f"bin{i}"))
    images = []
    for i in range(n_images):
        ref = f"registry.k8s.io/bench-rebuild/img{i:02d}:v1"
        sim.push_image(ref, ["amd64", "arm64"], base=f"rb{i % 3}", layer_kib=512)
        images.append(image_artifact(ref, name=f"img{i}"))
    archive, sha = kubespray_archive(tmp / "src")
    spec = write_spec(tmp, sim, str(archive), sha)
    plan_file = tmp / "plan.json"
    plan_file.write_text(plan_json(make_plan(files, images)))
    out = tmp / "bundle"
    argv = [sys.executable, "-c", DRIVER, str(plan_file), "--quiet", "build", str(spec), "-o", str(out)]
    first = timed(argv)
    second = timed(argv)
    sums = timed(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out)
    return report("synthetic plan", n_files + n_images, first, second, sums)


def real_release(tmp: Path, sim: UpstreamSimulator) -> dict[str, object] | None:
    source = REPO.parent / "shared" / "upstream" / "kubespray" / "kubespray-v2.31.0.tar.gz"
    if not source.is_file():
        print(f"real kubespray: skipped ({source} absent)")
        return None
    base = {"kubespray": {"version": "v2.31.0", "source": str(source)}, "arches": ["amd64", "arm64"]}
    plan = real_make_plan(BundleSpec.model_validate(base), load_tree(source, None, cache_dir=tmp / "cache"))
    archive = sim.add_kubespray(source, plan_files=plan.files)
    sim.push_plan_images(plan.images, ["amd64", "arm64"])
    spec = {
        "kubespray": {"version": "v2.31.0", "source": archive.url, "sha256": archive.sha256},
        "arches": ["amd64", "arm64"],
        "mirrors": sim.mirrors(),
        "credentials_file": str(sim.credentials_file(tmp / "real-creds.yaml")),
    }
    (tmp / "real.yaml").write_text(yaml.safe_dump(spec))
    out = tmp / "real-bundle"
    env = {**os.environ, "KUBEPLAY_CACHE_DIR": str(tmp / "cache")}
    argv = [sys.executable, "-m", "kubeplay", "--quiet", "build", str(tmp / "real.yaml"), "-o", str(out)]
    first = timed(argv, env=env)
    second = timed(argv, env=env)
    sums = timed(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out)
    return report("kubespray v2.31.0 (real planner)", len(plan.files) + len(plan.images), first, second, sums)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--images", type=int, default=20)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="kubeplay-bench-rebuild-") as tmp_name:
        tmp = Path(tmp_name)
        with UpstreamSimulator(tmp / "upstream", registry_auth="token") as sim:
            results.append(synthetic(tmp, sim, args.files, args.images))
            real = real_release(tmp, sim)
            if real:
                results.append(real)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
