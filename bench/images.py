"""Images into a bundle: kubeplay against skopeo, measured in the same run on the same simulator registry.

About 30 simulated multi-arch images (amd64 + arm64) share a few base layers; each has its own app layer
(a few hundred MB unique in all). Peers, each into a fresh directory:
  - `skopeo copy --multi-arch all docker://… dir:…` run image by image (what kubeplay's original CI and
    kubespray's offline scripts do);
  - one `skopeo sync --all` over the same images.
Prints wall times, ratios (peer / kubeplay), bundle image bytes against the unique blob bytes, and
kubeplay's peak RSS. Never asserted anywhere.

    .venv/bin/python bench/images.py [--images 30] [--layer-mib 4] [--jobs 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.build_fixture import image_artifact, kubespray_archive, make_plan, plan_json, write_spec  # noqa: E402

from kubeplay.lab.upstream import UpstreamSimulator  # noqa: E402
from kubeplay.lab.upstream.images import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, Blob, make_layer  # noqa: E402
from kubeplay.lab.upstream.push import RegistryPusher  # noqa: E402

DRIVER = """
import atexit, os, sys
import kubeplay.build.pipeline as pipeline

def _peak() -> None:  # VmHWM: this process's own peak RSS (ru_maxrss would include the parent's pre-exec pages)
    hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]
    if os.environ.get("KUBEPLAY_PEAK_RSS_FILE"):
        open(os.environ["KUBEPLAY_PEAK_RSS_FILE"], "w").write(hwm)

atexit.register(_peak)
from kubeplay.catalog.model import Plan
plan = Plan.model_validate_json(open(sys.argv[1]).read())
pipeline.cached_plan = lambda spec, tree, identity, state: plan
sys.argv = ["kubeplay", *sys.argv[2:]]
from kubeplay.cli.app import main
main()
"""


def run_child(
    argv: list[str], env: dict[str, str] | None = None
) -> tuple[float, int, subprocess.CompletedProcess[str]]:
    """Wall seconds, peak RSS (KiB) and result of one child process."""
    started = time.monotonic()
    peak = Path(tempfile.mkstemp(prefix="kubeplay-peak-")[1])
    env = {**(env or os.environ), "KUBEPLAY_PEAK_RSS_FILE": str(peak)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        _, status, _usage = os.wait4(proc.pid, 0)
        elapsed = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        code = os.waitstatus_to_exitcode(status)
        done = subprocess.CompletedProcess(
            argv, code, out.read().decode(errors="replace"), err.read().decode(errors="replace")
        )
    rss_kib = int(peak.read_text() or 0)
    peak.unlink()
    return elapsed, rss_kib, done


def incompressible(seed: str, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def push_images(sim: UpstreamSimulator, refs: list[str], bases: int, base_mib: int, own_mib: int) -> dict[str, int]:
    """Push two-arch images: a base layer shared by every image of its base set, plus one own layer."""
    sizes: dict[str, int] = {}
    base_layers: dict[tuple[int, str], Blob] = {}
    with RegistryPusher(sim.registry_url, sim.ca_cert, sim.username, sim.password) as pusher:
        for i, ref in enumerate(refs):
            repo_part, tag = ref.rsplit(":", 1)
            descriptors = []
            for arch in ("amd64", "arm64"):
                key = (i % bases, arch)
                if key not in base_layers:
                    data, _ = make_layer({f"lib/base{key[0]}-{arch}.so": incompressible(f"b{key}", base_mib << 20)})
                    base_layers[key] = Blob(OCI_LAYER, data)
                own_data, _ = make_layer({f"usr/bin/app{i}": incompressible(f"a{i}{arch}", own_mib << 20)})
                layers = [base_layers[key], Blob(OCI_LAYER, own_data)]
                config = Blob(
                    OCI_CONFIG,
                    json.dumps(
                        {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
                    ).encode(),
                )
                for blob in (*layers, config):
                    pusher.push_blob(repo_part, blob.data)
                    sizes[blob.digest] = len(blob.data)
                manifest = Blob(
                    OCI_MANIFEST,
                    json.dumps(
                        {
                            "schemaVersion": 2,
                            "mediaType": OCI_MANIFEST,
                            "config": config.descriptor(),
                            "layers": [b.descriptor() for b in layers],
                        }
                    ).encode(),
                )
                pusher.push_manifest(repo_part, manifest.digest, OCI_MANIFEST, manifest.data)
                sizes[manifest.digest] = len(manifest.data)
                descriptors.append({**manifest.descriptor(), "platform": {"os": "linux", "architecture": arch}})
            index = Blob(
                OCI_INDEX, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}).encode()
            )
            pusher.push_manifest(repo_part, tag, OCI_INDEX, index.data)
            sizes[index.digest] = len(index.data)
    return sizes


def dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--own-mib", type=int, default=3, help="size of each image's own layer per arch")
    parser.add_argument("--base-mib", type=int, default=8, help="size of a shared base layer per arch")
    parser.add_argument("--bases", type=int, default=3, help="number of base layers the images share")
    parser.add_argument("--jobs", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kubeplay-bench-images-") as tmp_name:
        tmp = Path(tmp_name)
        with UpstreamSimulator(tmp / "upstream", registry_auth="token") as sim:
            refs = [f"registry.k8s.io/bench/app{i:02d}:v1.0.{i}" for i in range(args.images)]
            print(
                f"pushing {len(refs)} images (amd64+arm64; {args.bases} shared {args.base_mib} MiB bases, "
                f"{args.own_mib} MiB own layer) ...",
                flush=True,
            )
            unique = push_images(sim, refs, args.bases, args.base_mib, args.own_mib)
            unique_bytes = sum(unique.values())
            archive, sha = kubespray_archive(tmp / "src")
            spec = write_spec(tmp, sim, str(archive), sha)
            plan = make_plan([], [image_artifact(r, name=f"app{i}") for i, r in enumerate(refs)])
            plan_file = tmp / "plan.json"
            plan_file.write_text(plan_json(plan))

            # kubeplay, in its own process (peak RSS is that process's)
            out = tmp / "bundle"
            argv = [
                sys.executable,
                "-c",
                DRIVER,
                str(plan_file),
                "--quiet",
                "build",
                str(spec),
                "-o",
                str(out),
                "--jobs",
                str(args.jobs),
            ]
            t_kp, rss_kp, res = run_child(argv)
            if res.returncode != 0:
                sys.exit(f"kubeplay build failed:\n{res.stderr}")
            blobs = out / "registry/docker/registry/v2/blobs"
            bundle_image_bytes = dir_bytes(blobs)

            creds = ["--src-creds", f"{sim.username}:{sim.password}", "--src-cert-dir", str(sim.cert_dir)]
            host = sim.registry_url.removeprefix("https://")
            started = time.monotonic()
            for i, ref in enumerate(refs):
                dest = tmp / "skopeo-copy" / f"app{i:02d}"
                dest.mkdir(parents=True)
                done = subprocess.run(
                    ["skopeo", "copy", "--multi-arch", "all", *creds, f"docker://{host}/{ref}", f"dir:{dest}"],
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=False,
                )
                if done.returncode != 0:
                    sys.exit(f"skopeo copy failed: {done.stderr}")
            t_copy = time.monotonic() - started
            copy_bytes = dir_bytes(tmp / "skopeo-copy")

            sync_src = {
                host: {
                    "cert-dir": str(sim.cert_dir),
                    "credentials": {"username": sim.username, "password": sim.password},
                    "images": {r.rsplit(":", 1)[0]: [r.rsplit(":", 1)[1]] for r in refs},
                }
            }
            sync_yaml = tmp / "sync.yaml"
            sync_yaml.write_text(yaml.safe_dump(sync_src))
            sync_yaml.chmod(0o600)
            (tmp / "skopeo-sync").mkdir()
            started = time.monotonic()
            done = subprocess.run(
                ["skopeo", "sync", "--all", "--src", "yaml", "--dest", "dir", str(sync_yaml), str(tmp / "skopeo-sync")],
                capture_output=True,
                text=True,
                timeout=3600,
                check=False,
            )
            t_sync = time.monotonic() - started
            if done.returncode != 0:
                sys.exit(f"skopeo sync failed: {done.stderr}")
            sync_bytes = dir_bytes(tmp / "skopeo-sync")

    mib = 1024 * 1024
    result = {
        "images": len(refs),
        "unique_blob_mib": round(unique_bytes / mib, 1),
        "kubeplay_s": round(t_kp, 2),
        "skopeo_copy_each_s": round(t_copy, 2),
        "skopeo_sync_s": round(t_sync, 2),
        "ratio_copy_each_vs_kubeplay": round(t_copy / t_kp, 2),
        "ratio_sync_vs_kubeplay": round(t_sync / t_kp, 2),
        "bundle_image_mib": round(bundle_image_bytes / mib, 1),
        "bundle_vs_unique": round(bundle_image_bytes / unique_bytes, 3),
        "skopeo_copy_each_mib": round(copy_bytes / mib, 1),
        "skopeo_sync_mib": round(sync_bytes / mib, 1),
        "kubeplay_peak_rss_mib": round(rss_kp / 1024, 1),
    }
    print(json.dumps(result, indent=2))
    print(
        f"kubeplay {t_kp:.1f}s | skopeo copy image by image {t_copy:.1f}s ({t_copy / t_kp:.1f}x slower) | "
        f"skopeo sync {t_sync:.1f}s ({t_sync / t_kp:.1f}x) | bundle {bundle_image_bytes / mib:.0f} MiB for "
        f"{unique_bytes / mib:.0f} MiB unique (x{bundle_image_bytes / unique_bytes:.2f}) | peak RSS {rss_kp / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
