"""How kubeplay's cost grows with the bundle: build, pack, verify, extract and serve at 1, 4 and 12 GiB.

Synthetic two-arch images (amd64 + arm64) are written straight into the upstream simulator's registry
storage (the real distribution registry then serves them over TLS with token auth): many small layers
(1-24 MiB), some of 100-500 MiB and, from 4 GiB on, one of 1.25 GiB; about 1, 4 and 12 GiB of unique
incompressible blobs. Then, each stage in its own process:

  build    `kubeplay build` (images only, --no-wheels --no-signatures) from the simulator
  pack     `kubeplay pack` (zstd, level 3) of the bundle directory
  verify   `kubeplay verify` of the archive (every digest, streaming)
  extract  `kubeplay extract` of the archive (safe extract, digests checked)
  serve    the distribution registry on the extracted registry/ storage; one client pulls every
           manifest and blob over loopback HTTP, checking each digest

Per stage and size it prints seconds per GiB of unique blob bytes, peak RSS (the stage's process tree,
each process's VmHWM read from /proc every 50 ms; for serve, the registry's), the most disk space the stage's directories
held at once (sampled every 200 ms, allocated blocks, temporary files included: TMPDIR and
KUBEPLAY_CACHE_DIR point inside the work directory) against its final size, and the stage's
throughput against the disk's sequential write speed measured with fsync at the start of the same run
(the named peer: nothing that writes the bundle can beat it). Linearity: s/GiB at the largest size over
s/GiB at the smallest, per stage. Never asserted anywhere.

Disk: the run needs about 2.2x the largest size free (the upstream copy and the bundle, then the bundle
and its archive, then the archive and the extracted copy); sizes that do not fit are skipped, saying so.
Everything is written under --workdir (default /var/tmp) in a directory that is removed at the end.

    .venv/bin/python bench/scale.py [--sizes 1,4,12] [--workdir DIR] [--jobs 4]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.bootstrap_fixture import free_ports  # noqa: E402
from tests.build_fixture import (  # noqa: E402
    PEAK_RSS_DRIVER,
    image_artifact,
    kubespray_archive,
    make_plan,
    plan_json,
    write_spec,
)

from kubeplay.bootstrap.health import MANIFEST_ACCEPT  # noqa: E402
from kubeplay.bootstrap.registry import registry_binary, render_registry_config, tagged_images  # noqa: E402
from kubeplay.lab.upstream import UpstreamSimulator  # noqa: E402
from kubeplay.lab.upstream.images import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST  # noqa: E402
from kubeplay.store.registry import RegistryStorage  # noqa: E402

GIB = 1 << 30
MIB = 1 << 20
CHUNK = 8 * MIB


def rss_of_tree(root: int) -> int:
    """Peak resident bytes of `root` and every descendant (VmHWM summed: each process's own high-water
    mark since its exec; ru_maxrss would count the parent's pages a fork copied), 0 when it is gone."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
                    break
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def allocated(paths: list[Path]) -> int:
    """Bytes of disk blocks allocated under `paths` (files vanishing while walked are skipped)."""
    total = 0
    todo = [str(p) for p in paths]
    while todo:
        top = todo.pop()
        try:
            with os.scandir(top) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            todo.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
        except OSError:
            continue
    return total


@dataclass
class Sampler:
    """Polls a process tree's RSS and the disk blocks under some directories until stopped."""

    pid: int
    disk: list[Path]
    peak_rss: int = 0
    peak_disk: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last_disk = 0.0
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, rss_of_tree(self.pid))
            if time.monotonic() - last_disk >= 0.2:
                self.peak_disk = max(self.peak_disk, allocated(self.disk))
                last_disk = time.monotonic()
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_disk = max(self.peak_disk, allocated(self.disk))


@dataclass(frozen=True)
class StageResult:
    seconds: float
    peak_rss: int
    peak_disk: int
    final_size: int


def run_stage(argv: list[str], env: dict[str, str], disk: list[Path], final: list[Path]) -> StageResult:
    """Run one stage's process to the end, sampling it; exit the bench with its stderr if it fails."""
    os.sync()  # untimed: no earlier stage's writes still queued for the disk
    started = time.monotonic()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
        sampler = Sampler(proc.pid, disk)
        _, status, _usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        sampler.stop()
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            sys.exit(f"{' '.join(argv[-6:])} failed:\n{err.read().decode(errors='replace')[-3000:]}")
    return StageResult(seconds, sampler.peak_rss, sampler.peak_disk, allocated(final))


def disk_write_speed(directory: Path, size: int = GIB) -> float:
    """Bytes per second of a sequential write of `size` bytes with fsync (dd conv=fsync), in `directory`."""
    probe = directory / "write-speed.probe"
    block = os.urandom(CHUNK)
    os.sync()
    started = time.monotonic()
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(size // CHUNK):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.monotonic() - started
    probe.unlink()
    return size / seconds


def layer_sizes(total: int, seed: int) -> list[int]:
    """A realistic spread summing to about `total`: one 1.25 GiB layer (from 4 GiB on), 100-500 MiB layers
    for ~60% of the rest, many 1-24 MiB layers for the remainder."""
    rng = random.Random(seed)
    sizes: list[int] = []
    if total >= 4 * GIB:
        sizes.append(GIB + GIB // 4)
    big_budget = int((total - sum(sizes)) * 0.6)
    while big_budget > 100 * MIB:
        size = min(rng.randint(100, 500) * MIB, big_budget)
        sizes.append(size)
        big_budget -= size
    small_budget = total - sum(sizes)
    while small_budget > MIB:
        size = min(rng.randint(1, 24) * MIB + rng.randint(0, MIB), small_budget)
        sizes.append(size)
        small_budget -= size
    rng.shuffle(sizes)
    return sizes


class RandomStream:
    """Incompressible bytes fast (AES-CTR keystream; Python's own generators make ~300 MiB/s)."""

    def __init__(self, seed: int) -> None:
        key = hashlib.sha256(f"scale-{seed}".encode()).digest()
        self._enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        self._zeros = bytes(CHUNK)

    def read(self, size: int) -> bytes:
        if size == CHUNK:
            return self._enc.update(self._zeros)
        return self._enc.update(bytes(size))


def write_blob(storage: RegistryStorage, data_source: RandomStream, size: int, tmp_dir: Path) -> str:
    """Stream `size` random bytes into the registry storage as a blob; return its digest."""
    digest = hashlib.sha256()
    tmp = tmp_dir / f"blob-{os.getpid()}-{time.monotonic_ns()}"
    with tmp.open("wb") as fh:
        left = size
        while left:
            chunk = data_source.read(min(CHUNK, left))
            digest.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
    name = f"sha256:{digest.hexdigest()}"
    path = storage.blob_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, path)
    return name


def small_blob(storage: RegistryStorage, data: bytes) -> str:
    name = f"sha256:{hashlib.sha256(data).hexdigest()}"
    storage.put_blob(name, data)
    return name


def make_images(storage_root: Path, total: int, seed: int, tmp_dir: Path) -> tuple[list[str], int, int]:
    """Write two-arch images into a registry storage tree: (refs, unique blob bytes, layer count).

    Layers are dealt to images of up to 6 layers per arch; each image is an OCI index of two manifests."""
    storage = RegistryStorage(storage_root)
    sizes = layer_sizes(total, seed)
    stream = RandomStream(seed)
    refs: list[str] = []
    unique = 0
    per_image = 12
    for i in range(0, len(sizes), per_image):
        group = sizes[i : i + per_image]
        repository = f"registry.k8s.io/scale/app{i // per_image:03d}"
        tag = f"v1.0.{i // per_image}"
        descriptors = []
        for arch, arch_sizes in (("amd64", group[0::2]), ("arm64", group[1::2] or group[:1])):
            layers = []
            for size in arch_sizes:
                digest = write_blob(storage, stream, size, tmp_dir)
                storage.link_blob(repository, digest)
                layers.append({"mediaType": OCI_LAYER, "digest": digest, "size": size})
                unique += size
            config = json.dumps(
                {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "n": i}
            ).encode()
            config_digest = small_blob(storage, config)
            storage.link_blob(repository, config_digest)
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                    "layers": layers,
                }
            ).encode()
            manifest_digest = small_blob(storage, manifest)
            storage.link_manifest(repository, manifest_digest)
            unique += len(config) + len(manifest)
            descriptors.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": manifest_digest,
                    "size": len(manifest),
                    "platform": {"os": "linux", "architecture": arch},
                }
            )
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}).encode()
        index_digest = small_blob(storage, index)
        storage.link_manifest(repository, index_digest)
        storage.tag(repository, tag, index_digest)
        refs.append(f"{repository}:{tag}")
    return refs, unique, len(sizes)


def pull_all(registry_url: str, storage: Path) -> int:
    """Every image's manifests and blobs from the registry, each digest checked; returns bytes received."""
    received = 0
    with httpx.Client(timeout=120, trust_env=False) as client:

        def get(url: str, digest: str | None, headers: dict[str, str] | None = None) -> bytes:
            nonlocal received
            hasher = hashlib.sha256()
            body = bytearray()
            with client.stream("GET", url, headers=headers) as r:
                r.raise_for_status()
                digest = digest or r.headers["Docker-Content-Digest"]
                for chunk in r.iter_bytes(CHUNK):
                    hasher.update(chunk)
                    received += len(chunk)
                    if len(body) < MIB:
                        body += chunk
            if f"sha256:{hasher.hexdigest()}" != digest:
                raise RuntimeError(f"{url}: digest mismatch")
            return bytes(body)

        for img in tagged_images(storage):
            base = f"{registry_url}/v2/{img.repository}"
            index = json.loads(get(f"{base}/manifests/{img.tag}", None, {"Accept": MANIFEST_ACCEPT}))
            for m in index.get("manifests", []):
                doc = json.loads(get(f"{base}/manifests/{m['digest']}", m["digest"], {"Accept": m["mediaType"]}))
                for blob in [doc["config"], *doc["layers"]]:
                    get(f"{base}/blobs/{blob['digest']}", blob["digest"])
    return received


def serve_stage(bundle: Path, work: Path) -> tuple[StageResult, int]:
    """Start the distribution registry on the extracted storage and pull everything once through it."""
    port = free_ports(1)[0]
    conf = work / "serve-registry.yml"
    conf.write_text(render_registry_config(bundle / "registry", port))
    binary = registry_binary()
    assert binary is not None
    os.sync()
    with (work / "serve-registry.log").open("wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen([binary, "serve", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        try:
            sampler = Sampler(proc.pid, [])
            url = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/v2/", timeout=1, trust_env=False).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            received = pull_all(url, bundle / "registry")
            seconds = time.monotonic() - started
            sampler.stop()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return StageResult(seconds, sampler.peak_rss, 0, 0), received


def bench_size(size_gib: float, work: Path, jobs: int, write_speed: float) -> dict[str, object]:
    work.mkdir(parents=True)
    tmp, cache = work / "tmp", work / "cache"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "KUBEPLAY_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO / "src")}
    kubeplay = [sys.executable, "-m", "kubeplay", "--quiet"]
    stages: dict[str, StageResult] = {}
    with UpstreamSimulator(work / "upstream", registry_auth="token") as sim:
        t0 = time.monotonic()
        refs, unique, layers = make_images(sim.workdir / "registry" / "storage", int(size_gib * GIB), 7, tmp)
        print(
            f"  {size_gib:g} GiB: {len(refs)} images, {layers} layers, {unique / GIB:.2f} GiB unique blobs written "
            f"upstream in {time.monotonic() - t0:.0f} s",
            flush=True,
        )
        archive, sha = kubespray_archive(work / "src")
        spec = write_spec(work, sim, str(archive), sha)
        plan = make_plan([], [image_artifact(r, name=f"app{i}") for i, r in enumerate(refs)])
        plan_file = work / "plan.json"
        plan_file.write_text(plan_json(plan))
        bundle = work / "bundle"
        argv = [sys.executable, "-c", PEAK_RSS_DRIVER, str(plan_file), "--quiet", "build", str(spec), "-o"]
        argv += [str(bundle), "--jobs", str(jobs), "--no-wheels", "--no-signatures"]
        stages["build"] = run_stage(argv, env, [bundle, cache, tmp], [bundle])
    shutil.rmtree(work / "upstream")  # the disk it held goes to the archive
    packed = work / "packed"
    stages["pack"] = run_stage([*kubeplay, "pack", str(bundle), "-o", str(packed)], env, [packed, tmp], [packed])
    archive_file = next(p for p in packed.iterdir() if p.name.endswith(".tar.zst"))
    shutil.rmtree(bundle)
    stages["verify"] = run_stage([*kubeplay, "verify", str(archive_file)], env, [tmp], [])
    extracted = work / "extracted"
    extracted.mkdir()
    stages["extract"] = run_stage(
        [*kubeplay, "extract", str(archive_file), "-C", str(extracted)], env, [extracted, tmp], [extracted]
    )
    shutil.rmtree(packed)
    served = next(p for p in extracted.iterdir() if p.is_dir())
    stages["serve"], received = serve_stage(served, work)
    if received < unique * 0.99:
        sys.exit(f"serve pulled {received} bytes of {unique}")
    shutil.rmtree(work)
    return {"size_gib": size_gib, "unique": unique, "stages": stages}


def print_table(results: list[dict[str, object]], write_speed: float) -> None:
    names = ["build", "pack", "verify", "extract", "serve"]
    print(f"\ndisk sequential write (fsync, same run): {write_speed / MIB:.0f} MiB/s = {GIB / write_speed:.2f} s/GiB")
    print(f"{'stage':8} {'size':>7} {'s/GiB':>7} {'MiB/s':>7} {'vs disk':>8} {'peak RSS':>9} {'peak disk/final':>16}")
    for res in results:
        unique = int(str(res["unique"]))
        stages = res["stages"]
        assert isinstance(stages, dict)
        for name in names:
            st: StageResult = stages[name]
            rate = unique / st.seconds
            disk = f"{st.peak_disk / st.final_size:.3f}x" if st.final_size else "-"
            print(
                f"{name:8} {unique / GIB:6.2f}G {st.seconds / (unique / GIB):7.2f} {rate / MIB:7.0f} "
                f"{rate / write_speed:7.2f}x {st.peak_rss / MIB:7.0f}MB {disk:>16}"
            )
    if len(results) > 1:
        first, last = results[0], results[-1]
        parts = []
        for name in names:
            s_first = first["stages"][name].seconds / (int(str(first["unique"])) / GIB)  # type: ignore[index]
            s_last = last["stages"][name].seconds / (int(str(last["unique"])) / GIB)  # type: ignore[index]
            parts.append(f"{name} {s_last / s_first:.2f}")
        print(
            f"linearity (s/GiB at {last['size_gib']} GiB over s/GiB at {first['size_gib']} GiB; "
            f"1.00 = straight line): {', '.join(parts)}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,4,12", help="GiB of unique blobs per run, comma-separated (e.g. 0.25)")
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp"), help="where the run's directory is made")
    ap.add_argument("--jobs", type=int, default=4, help="kubeplay build --jobs")
    args = ap.parse_args()
    sizes = [float(s) for s in args.sizes.split(",") if s.strip()]
    if registry_binary() is None or not shutil.which("nginx"):
        print("scale bench: docker-registry or nginx not installed; skipped", file=sys.stderr)
        return 0
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="kubeplay-bench-scale-", dir=args.workdir) as tmp_name:
        tmp = Path(tmp_name)
        write_speed = disk_write_speed(tmp)
        print(f"scale: disk write {write_speed / MIB:.0f} MiB/s in {tmp}; sizes {sizes} GiB", flush=True)
        for size in sizes:
            free = shutil.disk_usage(tmp).free
            if free < 2.3 * size * GIB:
                print(f"  {size:g} GiB skipped: {free / GIB:.1f} GiB free, the run needs ~{2.3 * size:.1f}")
                continue
            results.append(bench_size(size, tmp / f"size-{size:g}", args.jobs, write_speed))
    if results:
        print_table(results, write_speed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
