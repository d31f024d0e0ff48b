"""`kubeplay plan --sizes` speed: the default plan of the newest kubespray in ../shared, amd64+arm64, every
file and image served by the simulator (token auth), against the named peer doing the same by hand —
`curl -sI` per file and `skopeo inspect --raw` for each image's index and per-arch manifests, one after
the other — in one run. The ratio is peer seconds / kubeplay seconds. Target: under 2 s. Never asserted.

    .venv/bin/python bench/plan_sizes.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from kubeplay.catalog.examples import newest_release_archive, shared_dir
from kubeplay.lab.upstream import UpstreamSimulator
from kubeplay.lab.upstream.release import serve_release

ARCHES = ("amd64", "arm64")
GOARCH = {"amd64": "amd64", "arm64": "arm64"}


def run_kubeplay(bundle_yaml: Path, env: dict[str, str]) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "kubeplay", "plan", str(bundle_yaml), "--sizes", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=True,
    )
    return time.perf_counter() - started, json.loads(done.stdout)["sizes"]


def run_peer(sim: UpstreamSimulator, plan: dict[str, object]) -> float:
    """curl -sI per file, skopeo inspect --raw per image index and per-arch manifest, through the simulator."""
    creds = f"{sim.username}:{sim.password}"
    registry = sim.registry_url.removeprefix("https://")
    started = time.perf_counter()
    for f in plan["files"]:  # type: ignore[attr-defined]
        subprocess.run(
            ["curl", "-sfIL", "--cacert", str(sim.ca_cert), sim.file_url(f["url"])],
            capture_output=True,
            timeout=60,
            check=True,
        )
    for image in plan["images"]:  # type: ignore[attr-defined]
        ref = f"docker://{registry}/{image['registry']}/{image['repository']}"
        top = ref + (f"@{image['digest']}" if image.get("digest") else f":{image['tag']}")
        base = ["skopeo", "inspect", "--raw", "--cert-dir", str(sim.cert_dir), "--creds", creds]
        raw = subprocess.run([*base, top], capture_output=True, text=True, timeout=60, check=True).stdout
        for desc in json.loads(raw).get("manifests") or []:
            if desc.get("platform", {}).get("architecture") in GOARCH.values():
                subprocess.run([*base, f"{ref}@{desc['digest']}"], capture_output=True, timeout=60, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    archive = newest_release_archive()
    if archive is None:
        print(f"bench/plan_sizes.py: skipped: no kubespray release under {shared_dir()}/upstream/kubespray")
        return
    with tempfile.TemporaryDirectory(prefix="kubeplay-bench-sizes-") as tmp_name:
        tmp = Path(tmp_name)
        with UpstreamSimulator(tmp / "upstream") as sim:
            served = serve_release(sim, archive, arches=ARCHES, cache_dir=tmp / "cache", layer_kib=16)
            spec = {
                "kubespray": {"version": served.version, "source": str(served.archive.path)},
                "arches": list(ARCHES),
                "mirrors": sim.mirrors(),
                "credentials_file": str(sim.credentials_file(tmp / "credentials.yaml")),
            }
            spec["kubespray"]["sha256"] = served.archive.sha256  # type: ignore[index]
            bundle_yaml = tmp / "bundle.yaml"
            bundle_yaml.write_text(yaml.safe_dump(spec))
            env = {**os.environ, "KUBEPLAY_CACHE_DIR": str(tmp / "cache")}
            run_kubeplay(bundle_yaml, env)  # warm the release cache (extraction), as a user's second run
            times, sizes = [], {}
            for _ in range(args.runs):
                seconds, sizes = run_kubeplay(bundle_yaml, env)
                times.append(seconds)
            plan = json.loads(
                subprocess.run(
                    [sys.executable, "-m", "kubeplay", "plan", str(bundle_yaml), "--json"],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    env=env,
                    check=True,
                ).stdout
            )
            peer = run_peer(sim, plan)
    kubeplay_s = statistics.median(times)
    print(f"kubespray release: {archive.name}, amd64+arm64: {len(plan['files'])} files, {len(plan['images'])} images")
    print(
        f"kubeplay plan --sizes (whole command, fresh process): {kubeplay_s * 1000:.0f} ms median of {len(times)} "
        f"— target < 2000 ms; total {sizes['total']} bytes in {sizes['blobs']} blobs, {len(sizes['unknown'])} unsized"
    )
    print(f"peer curl -sI + skopeo inspect --raw, one at a time: {peer * 1000:.0f} ms")
    print(f"ratio peer/kubeplay: {peer / kubeplay_s:.1f}x")


if __name__ == "__main__":
    main()
