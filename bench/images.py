"""Images into a bundle: kubeplay against skopeo, measured in the same run on the same simulator registry.

About 30 simulated multi-arch images (amd64 + arm64) share a few base layers; each has its own app layer
(a few hundred MB unique in all). Peers, each into a fresh directory:
  - `skopeo copy --multi-arch all docker://… dir:…` run image by image (what kubeplay's original CI and
    kubespray's offline scripts do);
  - one `skopeo sync --all` over the same images.
kubeplay runs twice: as a user gets it (looking up every image's upstream cosign artifacts too) and with
--no-signatures (the like-for-like comparison: neither peer copies them); the difference is printed.
All of them run in alternating order for several rounds (the machine's load drifts within a run); prints
median wall times, ratios (peer / kubeplay), bundle image bytes against the unique blob bytes, and
kubeplay's peak RSS. kubeplay runs with --no-wheels (wheels/ come from PyPI and are no image work).
Never asserted anywhere.

    .venv/bin/python bench/images.py [--images 30] [--own-mib 3] [--base-mib 8] [--jobs 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.build_fixture import (  # noqa: E402
    PEAK_RSS_DRIVER,
    image_artifact,
    kubespray_archive,
    make_plan,
    plan_json,
    write_spec,
)

from kubeplay.lab.upstream import UpstreamSimulator  # noqa: E402
from kubeplay.lab.upstream.images import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, Blob, make_layer  # noqa: E402
from kubeplay.lab.upstream.push import RegistryPusher  # noqa: E402


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
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument(
        "--user-images",
        type=int,
        default=10,
        help="how many of the images kubeplay gets from bundle.yaml images: (the rest from kubespray's plan)",
    )
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
            own = len(refs) - min(args.user_images, len(refs))
            spec_data = yaml.safe_load(spec.read_text())
            spec_data["images"] = refs[own:]  # the user's own: the same fetch path as kubespray's
            spec.write_text(yaml.safe_dump(spec_data))
            plan = make_plan([], [image_artifact(r, name=f"app{i}") for i, r in enumerate(refs[:own])])
            plan_file = tmp / "plan.json"
            plan_file.write_text(plan_json(plan))

            creds = ["--src-creds", f"{sim.username}:{sim.password}", "--src-cert-dir", str(sim.cert_dir)]
            host = sim.registry_url.removeprefix("https://")
            sync_yaml = tmp / "sync.yaml"
            sync_src = {
                host: {
                    "cert-dir": str(sim.cert_dir),
                    "credentials": {"username": sim.username, "password": sim.password},
                    "images": {r.rsplit(":", 1)[0]: [r.rsplit(":", 1)[1]] for r in refs},
                }
            }
            sync_yaml.write_text(yaml.safe_dump(sync_src))
            sync_yaml.chmod(0o600)
            rss: list[int] = []
            peers: dict[str, Callable[[Path], float]] = {
                "kubeplay": lambda out: run_kubeplay(plan_file, spec, out, args.jobs, rss),
                # the peers copy no cosign artifacts: the same build without looking for them, like for like
                "kubeplay_no_signatures": lambda out: run_kubeplay(
                    plan_file, spec, out, args.jobs, rss, "--no-signatures"
                ),
                "skopeo_copy_each": lambda out: run_skopeo_copy(refs, host, creds, out),
                "skopeo_sync": lambda out: run_skopeo_sync(sync_yaml, out),
            }
            times: dict[str, list[float]] = {name: [] for name in peers}
            sizes: dict[str, int] = {}
            for rnd in range(args.rounds):
                # alternate the order: the machine's load drifts, and no peer should always get the quieter part
                for name in list(peers) if rnd % 2 == 0 else list(peers)[::-1]:
                    out = tmp / f"{name}-{rnd}"
                    times[name].append(peers[name](out))
                    sizes[name] = dir_bytes(
                        out / "registry/docker/registry/v2/blobs" if name.startswith("kubeplay") else out
                    )
                    shutil.rmtree(out)

    mib = 1024 * 1024
    t_kp, t_copy, t_sync = (statistics.median(times[k]) for k in ("kubeplay", "skopeo_copy_each", "skopeo_sync"))
    t_nosig = statistics.median(times["kubeplay_no_signatures"])
    bundle_image_bytes = sizes["kubeplay"]
    result = {
        "images": len(refs),
        "of_them_bundle_yaml_images": len(refs) - own,
        "rounds": args.rounds,
        "unique_blob_mib": round(unique_bytes / mib, 1),
        "kubeplay_s": [round(t, 2) for t in times["kubeplay"]],
        "kubeplay_no_signatures_s": [round(t, 2) for t in times["kubeplay_no_signatures"]],
        "skopeo_copy_each_s": [round(t, 2) for t in times["skopeo_copy_each"]],
        "skopeo_sync_s": [round(t, 2) for t in times["skopeo_sync"]],
        "ratio_copy_each_vs_kubeplay": round(t_copy / t_kp, 2),
        "ratio_sync_vs_kubeplay": round(t_sync / t_kp, 2),
        "ratio_copy_each_vs_kubeplay_no_signatures": round(t_copy / t_nosig, 2),
        "signature_lookup_s": round(t_kp - t_nosig, 2),
        "ratio_copy_each_per_round": [
            round(c / k, 2) for k, c in zip(times["kubeplay"], times["skopeo_copy_each"], strict=True)
        ],
        "bundle_image_mib": round(bundle_image_bytes / mib, 1),
        "bundle_vs_unique": round(bundle_image_bytes / unique_bytes, 3),
        "skopeo_copy_each_mib": round(sizes["skopeo_copy_each"] / mib, 1),
        "skopeo_sync_mib": round(sizes["skopeo_sync"] / mib, 1),
        "kubeplay_peak_rss_mib": round(max(rss) / 1024, 1),
    }
    print(json.dumps(result, indent=2))
    print(
        f"kubeplay {t_kp:.1f}s | skopeo copy image by image {t_copy:.1f}s ({t_copy / t_kp:.1f}x slower) | "
        f"skopeo sync {t_sync:.1f}s ({t_sync / t_kp:.1f}x) | bundle {bundle_image_bytes / mib:.0f} MiB for "
        f"{unique_bytes / mib:.0f} MiB unique (x{bundle_image_bytes / unique_bytes:.2f}) | "
        f"peak RSS {max(rss) / 1024:.0f} MiB (medians of {args.rounds} alternating rounds)"
    )
    print(
        f"like for like (the peers copy no cosign artifacts): kubeplay --no-signatures {t_nosig:.1f}s -> skopeo copy "
        f"image by image {t_copy / t_nosig:.1f}x slower, skopeo sync {t_sync / t_nosig:.1f}x; looking up upstream "
        f"signatures costs {t_kp - t_nosig:.1f}s"
    )


def run_kubeplay(plan_file: Path, spec: Path, out: Path, jobs: int, rss: list[int], *extra: str) -> float:
    """Seconds for `kubeplay build` in its own process (its peak RSS is appended to `rss`)."""
    argv = [sys.executable, "-c", PEAK_RSS_DRIVER, str(plan_file), "--quiet", "build", str(spec), "-o", str(out)]
    argv += ["--jobs", str(jobs), "--no-wheels", *extra]  # wheels/ come from PyPI: not image work, no peer does it
    elapsed, rss_kib, res = run_child(argv)
    if res.returncode != 0:
        sys.exit(f"kubeplay build failed:\n{res.stderr}")
    rss.append(rss_kib)
    return elapsed


def skopeo(argv: list[str], timeout: int) -> None:
    """Run `skopeo ARGV`; exit the bench with skopeo's own error when it fails."""
    done = subprocess.run(["skopeo", *argv], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        sys.exit(f"skopeo {argv[0]} failed: {done.stderr}")


def run_skopeo_copy(refs: list[str], host: str, creds: list[str], out: Path) -> float:
    """Seconds for `skopeo copy --multi-arch all docker://… dir:…`, one process per image."""
    started = time.monotonic()
    for i, ref in enumerate(refs):
        dest = out / f"app{i:02d}"
        dest.mkdir(parents=True)
        skopeo(["copy", "--multi-arch", "all", *creds, f"docker://{host}/{ref}", f"dir:{dest}"], timeout=600)
    return time.monotonic() - started


def run_skopeo_sync(sync_yaml: Path, out: Path) -> float:
    """Seconds for one `skopeo sync --all` over every image."""
    out.mkdir()
    started = time.monotonic()
    skopeo(["sync", "--all", "--src", "yaml", "--dest", "dir", str(sync_yaml), str(out)], timeout=3600)
    return time.monotonic() - started


if __name__ == "__main__":
    main()
