"""From a packed bundle to "every image pullable": kubeplay vs load-and-push, measured in one run.

kubeplay: extract the .tar.zst (safe extract, digests checked) and start the distribution registry on
the bundle's own registry/ storage; nothing is copied image by image.
Peer (load-and-push, as kubespray's contrib/offline manage-offline-container-images.sh `register`,
kubeasz and sealos-style tools do): unpack a `tar | pigz` of per-image docker-archive tars, start a
fresh registry, `skopeo copy docker-archive:… docker://…` each image into it.
Both end when every image's manifest and blobs answer 200 from the registry. Prints the ratio.

Where it runs: in /dev/shm (tmpfs) when it has room, else the system's temporary directory; `--workdir`
picks a directory. tmpfs is the conservative choice for the ratio: it makes the peer's fsyncs (the
registry syncs every blob it commits) free, and the peer writes four times the bytes kubeplay does.
On a disk the machine's history can decide the result instead: this machine's root file system is an
ext4 without a journal, where the inode allocator skips every inode freed while its table block is
cached (ext4 `recently_deleted()`: a window of dirty_expire_centisecs*10 s, over 8 hours), so after
a test suite has deleted a few hundred thousand files each file or directory created costs 0.1-0.5 ms
instead of ~0.02 ms (4000 creations: 0.4-2.1 s there, 0.09 s on a fresh journaled ext4, 0.03 s on
tmpfs). kubeplay's side creates ~1,600 entries in about a second, so it is the side that loses.
Measured on a fresh journaled ext4 (loop device): kubeplay 1.27 s, as on tmpfs (1.13 s); the peer
18.8 s, slower than on tmpfs (11.1 s). Before each side: `sync` (untimed).

    .venv/bin/python bench/serve.py [--images 36] [--layer-mib 8] [--rounds 5] [--workdir DIR]
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.bootstrap_fixture import free_ports, make_bundle

from kubeplay.bootstrap.health import MANIFEST_ACCEPT
from kubeplay.bootstrap.registry import TaggedImage, manifest_children, render_registry_config, tagged_images
from kubeplay.bundle.extract import extract_bundle
from kubeplay.bundle.pack import pack_bundle

REGISTRY = "/usr/bin/docker-registry"
SHM = Path("/dev/shm")


def mount_of(path: Path) -> tuple[str, str]:
    """(mount point, file system type) of the mount holding `path`: the longest mount point prefix."""
    best, kind = "", "?"
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mount, fstype = line.split()[1:3]
        if (str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
            best, kind = mount, fstype
    return best, kind


def default_workdir(need: int) -> Path | None:
    """/dev/shm when it is a tmpfs with `need` bytes free, else None (the system's temporary directory)."""
    try:
        tmpfs = mount_of(SHM) == (str(SHM), "tmpfs")
    except OSError:
        return None
    return SHM if tmpfs and shutil.disk_usage(SHM).free > need else None


class Registry:
    """docker-registry on a free loopback port over `storage`; stopped by PID."""

    def __init__(self, storage: Path, workdir: Path) -> None:
        self.port = free_ports(1)[0]
        conf = workdir / f"registry-{self.port}.yml"
        conf.write_text(render_registry_config(storage, self.port))
        self.log = (workdir / f"registry-{self.port}.log").open("wb")
        self.proc = subprocess.Popen([REGISTRY, "serve", str(conf)], stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, deadline: float = 30.0) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:  # every 5 ms: the same short poll for both sides, bounded by the deadline
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.005)
        raise RuntimeError("registry did not answer")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


def probe(url: str, images: list[TaggedImage], blobs_of: Callable[[TaggedImage, httpx.Response], list[str]]) -> None:
    """Every image's manifest by tag and every blob it names answers 200 (raises otherwise).

    The probe is the finish line for both sides, so it should cost as little as it can: images are
    probed four at a time over one keep-alive client (every request is still made)."""

    def one(img: TaggedImage) -> None:
        r = client.get(f"{url}/v2/{img.repository}/manifests/{img.tag}", headers={"Accept": MANIFEST_ACCEPT})
        r.raise_for_status()
        for blob in blobs_of(img, r):
            client.head(f"{url}/v2/{img.repository}/blobs/{blob}").raise_for_status()

    with httpx.Client(timeout=30, trust_env=False) as client, ThreadPoolExecutor(4) as pool:
        list(pool.map(one, images))


def all_pullable(url: str, images: list[TaggedImage], storage: Path) -> None:
    """kubeplay's registry: the blobs each manifest names, read from the bundle's storage."""
    probe(url, images, lambda img, r: manifest_children(storage, r.headers.get("docker-content-digest", img.digest))[2])


def peer_blob_refs(url: str, images: list[TaggedImage]) -> None:
    """The peer's registry, whose manifests skopeo rewrote (different digests): the blobs the manifest names."""

    def blobs_of(img: TaggedImage, r: httpx.Response) -> list[str]:
        doc = r.json()
        return [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]

    probe(url, images, blobs_of)


def skopeo(*args: str) -> None:
    subprocess.run(["skopeo", "--insecure-policy", *args], check=True, capture_output=True, timeout=600)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=36)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--layer-mib", type=float, default=8.0, help="uncompressed size of each layer")
    ap.add_argument("--random", action="store_true", help="incompressible layers (a worst case for kubeplay)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians are reported")
    ap.add_argument("--workdir", type=Path, help="where to run (default: /dev/shm when it has room)")
    args = ap.parse_args()
    # Peak use: the source bundle, its archive, the peer's tars (uncompressed layers) and archive, one round.
    need = int(5 * args.images * args.layers * args.layer_mib * 2**20)
    workdir = args.workdir or default_workdir(need)
    for tool in (REGISTRY, "skopeo", "pigz", "tar"):
        if not shutil.which(tool) and not Path(tool).exists():
            print(f"serve bench: {tool} not installed; skipped", file=sys.stderr)
            return 0
    with tempfile.TemporaryDirectory(prefix="kubeplay-bench-serve-", dir=workdir) as tmp:
        work = Path(tmp)
        # Layers compress about 2.5x, like real ones; the first is shared by every image, like a base image.
        src = make_bundle(
            work / "src",
            images=args.images,
            layers_per_image=args.layers,
            layer_size=int(args.layer_mib * 2**20),
            compressible=not args.random,
        )
        images = tagged_images(src / "registry")
        archive = pack_bundle(src, work / "packed", "bench").archive
        bundle_mib = archive.stat().st_size / 2**20

        # Peer's input, prepared untimed: one docker-archive per image, then tar | pigz of the lot.
        tars = work / "peer-src" / "images"
        tars.mkdir(parents=True)
        source = Registry(src / "registry", work)
        source.wait_ready()
        for i, img in enumerate(images):
            skopeo(
                "copy",
                "--src-tls-verify=false",
                f"docker://127.0.0.1:{source.port}/{img.repository}:{img.tag}",
                f"docker-archive:{tars}/{i:03d}.tar:{img.repository}:{img.tag}",
            )
        source.stop()
        peer_archive = work / "peer.tar.gz"
        subprocess.run(f"tar -C {work / 'peer-src'} -cf - images | pigz > {peer_archive}", shell=True, check=True)

        def run_kubeplay(round_dir: Path) -> tuple[float, float]:
            """Extract (digests checked) + start the registry on the bundle's storage: (total s, unpack s)."""
            t0 = time.monotonic()
            result = extract_bundle(archive, round_dir / "kp")
            unpack = time.monotonic() - t0
            reg = Registry(result.root / "registry", round_dir)
            reg.wait_ready()
            all_pullable(reg.url, images, result.root / "registry")
            total = time.monotonic() - t0
            reg.stop()
            return total, unpack

        def run_peer(round_dir: Path) -> tuple[float, float]:
            """Unpack, fresh registry, load-and-push every image: (total s, unpack s)."""
            t0 = time.monotonic()
            (round_dir / "peer").mkdir()
            subprocess.run(["tar", "-I", "pigz", "-xf", str(peer_archive), "-C", str(round_dir / "peer")], check=True)
            unpack = time.monotonic() - t0
            (round_dir / "peer-registry").mkdir()
            reg = Registry(round_dir / "peer-registry", round_dir)
            reg.wait_ready()
            for i, img in enumerate(images):
                skopeo(
                    "copy",
                    "--dest-tls-verify=false",
                    f"docker-archive:{round_dir}/peer/images/{i:03d}.tar",
                    f"docker://127.0.0.1:{reg.port}/{img.repository}:{img.tag}",
                )
            peer_blob_refs(reg.url, images)
            total = time.monotonic() - t0
            reg.stop()
            return total, unpack

        # Alternating order, fresh directories each round: the disk's writeback drifts within a run (each
        # round writes a few GB), and neither side should always get the quieter part.
        kp_runs: list[tuple[float, float]] = []
        peer_runs: list[tuple[float, float]] = []
        mount, fstype = mount_of(work)
        for rnd in range(args.rounds):
            order = [("kubeplay", run_kubeplay, kp_runs), ("peer", run_peer, peer_runs)]
            for name, run, runs in order if rnd % 2 == 0 else order[::-1]:
                round_dir = work / f"{name}-{rnd}"
                round_dir.mkdir()
                os.sync()  # untimed: each side starts with no other run's writes still queued for the disk
                runs.append(run(round_dir))
                shutil.rmtree(round_dir)
        kubeplay_s, kubeplay_unpack = (statistics.median(r[i] for r in kp_runs) for i in (0, 1))
        peer_s, peer_unpack = (statistics.median(r[i] for r in peer_runs) for i in (0, 1))
        ratios = [p[0] / k[0] for k, p in zip(kp_runs, peer_runs, strict=True)]

    print(
        f"serve: {len(images)} images x {args.layers} layers x {args.layer_mib} MiB uncompressed"
        f" ({'random' if args.random else 'compressible'}); bundle {bundle_mib:.0f} MiB packed;"
        f" in {fstype} at {mount}"
    )
    print(
        f"  kubeplay (extract + start registry):           {kubeplay_s:7.2f} s"
        f"  (unpack+verify {kubeplay_unpack:.2f} s, serve {kubeplay_s - kubeplay_unpack:.2f} s)"
    )
    print(
        f"  load-and-push (tar|pigz, skopeo per image):    {peer_s:7.2f} s"
        f"  (unpack {peer_unpack:.2f} s, push {peer_s - peer_unpack:.2f} s)"
    )
    print(
        f"  ratio: kubeplay is {peer_s / kubeplay_s:.1f}x faster than load-and-push (medians of {args.rounds} "
        f"alternating rounds; per round {', '.join(f'{r:.1f}x' for r in ratios)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
