"""Pack and unpack a bundle-shaped directory: kubeplay (tar + multi-threaded zstd, streaming, with a sha256
of every file) against `tar | pigz` (the original kubeplay's .tar.gz), measured in the same run.

The directory mixes what a real bundle holds: ELF binaries and shared libraries from this machine (the
files/ tree), gzip-compressed layers (registry blobs, which neither compressor can shrink much), text
trees (kubespray, when ../shared has it), and the wheels cache when present.

    .venv/bin/python bench/pack.py [--size-mb 600] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from kubeplay.bundle.extract import extract_bundle
from kubeplay.bundle.manifest import write_sha256sums
from kubeplay.bundle.pack import pack_bundle

REPO = Path(__file__).resolve().parents[1]
STEM = "kubeplay-bench-amd64"


def _copy_files(sources: list[Path], dest: Path, budget: int) -> int:
    used = 0
    for root in sources:
        for current, _dirs, names in os.walk(root):
            for name in sorted(names):
                path = Path(current) / name
                if path.is_symlink() or not path.is_file():
                    continue
                size = path.stat().st_size
                if size < 4096 or used + size > budget:
                    continue
                target = dest / path.relative_to("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copyfile(path, target)
                except OSError:
                    continue
                used += size
            if used >= budget * 0.98:
                return used
    return used


def _layers(dest: Path, sources: list[Path], budget: int) -> int:
    """gzip'd tar chunks of real files, stored like registry blobs (content-addressed)."""
    used = 0
    files = [Path(c) / n for root in sources for c, _d, ns in os.walk(root) for n in ns]
    chunk: list[Path] = []
    for path in files:
        if path.is_symlink() or not path.is_file():
            continue
        chunk.append(path)
        if len(chunk) < 400:
            continue
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            for member in chunk:
                try:
                    tar.add(member)
                except OSError:
                    continue
        data = gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)
        digest = hashlib.sha256(data).hexdigest()
        blob = dest / "registry/docker/registry/v2/blobs/sha256" / digest[:2] / digest / "data"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        used += len(data)
        chunk = []
        if used >= budget:
            break
    return used


def make_bundle_dir(root: Path, size_mb: int) -> Path:
    bundle = root / STEM
    budget = size_mb << 20
    files = _copy_files([Path("/usr/bin"), Path("/usr/lib"), Path("/usr/libexec")], bundle / "files", budget // 2)
    _layers(bundle, [Path("/usr/share"), Path("/usr/lib/python3"), Path("/usr/include")], budget - files)
    kubespray = REPO / "../shared/upstream/kubespray/kubespray-v2.31.0.tar.gz"
    if kubespray.is_file():
        with tarfile.open(kubespray) as tar:
            tar.extractall(bundle / "kubespray", filter="data")
        for link in [p for p in (bundle / "kubespray").rglob("*") if p.is_symlink()]:
            link.unlink()  # bundles hold regular files only (the build resolves kubespray's few links)
    wheels = Path.home() / ".cache/kubeplay/wheels"
    if wheels.is_dir():
        (bundle / "wheels").mkdir()
        for wheel in sorted(wheels.glob("*.whl")):
            shutil.copyfile(wheel, bundle / "wheels" / wheel.name)
    write_sha256sums(bundle, use_cache=False)
    return bundle


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _timed(label: str, fn: object) -> float:
    start = time.monotonic()
    fn()  # type: ignore[operator]
    took = time.monotonic() - start
    print(f"  {label:<28} {took:7.2f} s", flush=True)
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=600, help="approximate size of the bundle directory")
    parser.add_argument("--keep", type=Path, help="work here and keep the files (default: a temp dir, removed)")
    args = parser.parse_args()
    if shutil.which("pigz") is None:
        print("pigz is not installed (apt-get install pigz): no peer to compare with", file=sys.stderr)
        return 1
    work = args.keep or Path(tempfile.mkdtemp(prefix="kubeplay-bench-pack-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"building a bundle-shaped directory of about {args.size_mb} MiB in {work} ...", flush=True)
        bundle = make_bundle_dir(work / "src", args.size_mb)
        size = _du(bundle)
        count = sum(1 for p in bundle.rglob("*") if p.is_file())
        print(f"  {count} files, {size / 2**20:.0f} MiB; {os.cpu_count()} CPUs")
        _du(bundle)  # both contenders read from a warm page cache

        out = work / "out"
        pigz_archive = work / f"{STEM}.tar.gz"
        print("pack:")
        kp_pack = _timed("kubeplay pack (zstd -3, MT)", lambda: pack_bundle(bundle, out, STEM))
        pigz_pack = _timed(
            "tar | pigz -6",
            lambda: subprocess.run(
                [
                    "sh",
                    "-c",
                    'tar -C "$1" -cf - "$2" | pigz -6 > "$3"',
                    "sh",
                    str(bundle.parent),
                    STEM,
                    str(pigz_archive),
                ],
                check=True,
                timeout=3600,
            ),
        )
        kp_size = (out / f"{STEM}.tar.zst").stat().st_size
        pigz_size = pigz_archive.stat().st_size
        print("unpack:")
        kp_dest, pigz_dest = work / "x-kubeplay", work / "x-pigz"
        pigz_dest.mkdir()
        kp_unpack = _timed(
            "kubeplay extract (checked)",
            lambda: extract_bundle(out / f"{STEM}.tar.zst", kp_dest, check_digests=False),
        )
        pigz_unpack = _timed(
            "pigz -dc | tar -x",
            lambda: subprocess.run(
                ["sh", "-c", 'pigz -dc "$1" | tar -C "$2" -xf -', "sh", str(pigz_archive), str(pigz_dest)],
                check=True,
                timeout=3600,
            ),
        )
        pigz_check = _timed(
            "  then sha256sum -c SHA256SUMS",
            lambda: subprocess.run(
                ["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=pigz_dest / STEM, check=True, timeout=3600
            ),
        )
        print("results (kubeplay vs tar|pigz, same directory, same run):")
        print(
            f"  archive size     {kp_size / 2**20:8.1f} MiB vs {pigz_size / 2**20:8.1f} MiB  ratio {kp_size / pigz_size:.3f}"
        )
        print(f"  compression      {kp_size / size:8.3f}     vs {pigz_size / size:8.3f}")
        print(f"  pack time        {kp_pack:8.2f} s   vs {pigz_pack:8.2f} s    speed-up {pigz_pack / kp_pack:.2f}x")
        print(
            f"  unpack time      {kp_unpack:8.2f} s   vs {pigz_unpack:8.2f} s    speed-up {pigz_unpack / kp_unpack:.2f}x"
        )
        checked = pigz_unpack + pigz_check
        print(f"  unpack+verify    {kp_unpack:8.2f} s   vs {checked:8.2f} s    speed-up {checked / kp_unpack:.2f}x")
        print("  (kubeplay hashes every file while it packs and unpacks; the plain peer checks nothing)")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
