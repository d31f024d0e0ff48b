"""Pack and unpack a bundle-shaped directory: kubeplay (tar + multi-threaded zstd, or gzip through pigz or
zlib; streaming, with a sha256 of every file) against `tar | pigz` (the original kubeplay's .tar.gz),
measured in the same run.

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

from kubeplay.bundle.compression import SUFFIXES, Compression
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


def _pack(bundle: Path, out: Path, compression: Compression, pigz: bool) -> None:
    os.environ["KUBEPLAY_PIGZ"] = "1" if pigz else "0"
    pack_bundle(bundle, out, STEM, compression=compression)


def _sh(script: str, *args: str) -> None:
    subprocess.run(["sh", "-c", script, "sh", *args], check=True, timeout=3600)


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
        _du(bundle)  # every contender reads from a warm page cache

        modes = {  # label: (compression, pigz)
            "zstd -3 (MT)": (Compression.ZSTD, True),
            "gzip -6 via pigz": (Compression.GZIP, True),
            "gzip -6 via zlib": (Compression.GZIP, False),
        }
        peer = work / f"{STEM}.tar.gz"
        print("pack:")
        packed: dict[str, tuple[Path, float]] = {}
        for i, (label, (compression, pigz)) in enumerate(modes.items()):
            out = work / f"out{i}"
            took = _timed(f"kubeplay {label}", lambda o=out, c=compression, z=pigz: _pack(bundle, o, c, z))
            packed[label] = (out / f"{STEM}{SUFFIXES[compression]}", took)
        peer_pack = _timed(
            "tar | pigz -6", lambda: _sh('tar -C "$1" -cf - "$2" | pigz -6 > "$3"', str(bundle.parent), STEM, str(peer))
        )
        peer_size = peer.stat().st_size

        print("unpack:")
        unpacked: dict[str, float] = {}
        for i, (label, (archive, _took)) in enumerate(packed.items()):
            dest = work / f"x{i}"
            unpacked[label] = _timed(
                f"kubeplay extract {label}",
                lambda a=archive, d=dest: extract_bundle(a, d, check_digests=False),
            )
        peer_dest, plain_dest = work / "x-pigz", work / "x-plain"
        peer_dest.mkdir()
        plain_dest.mkdir()
        peer_unpack = _timed(
            "pigz -dc | tar -x", lambda: _sh('pigz -dc "$1" | tar -C "$2" -xf -', str(peer), str(peer_dest))
        )
        gz_archive = packed["gzip -6 via pigz"][0]
        plain_unpack = _timed(
            "tar -xzf (kubeplay's .tar.gz)", lambda: _sh('tar -C "$2" -xzf "$1"', str(gz_archive), str(plain_dest))
        )
        peer_check = _timed(
            "  then sha256sum -c SHA256SUMS",
            lambda: subprocess.run(
                ["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=peer_dest / STEM, check=True, timeout=3600
            ),
        )

        print("results (kubeplay vs tar|pigz -6, same directory, same run; ratio > 1 means kubeplay is faster):")
        print(f"  {'mode':<20} {'size MiB':>9} {'size ratio':>10} {'pack speed-up':>14} {'unpack speed-up':>16}")
        print(f"  {'tar | pigz -6':<20} {peer_size / 2**20:9.1f} {1.0:10.3f} {1.0:13.2f}x {1.0:15.2f}x")
        for label, (archive, took) in packed.items():
            kp_size = archive.stat().st_size
            print(
                f"  {label:<20} {kp_size / 2**20:9.1f} {kp_size / peer_size:10.3f} "
                f"{peer_pack / took:13.2f}x {peer_unpack / unpacked[label]:15.2f}x"
            )
        checked = peer_unpack + peer_check
        best = min(unpacked.values())
        print(
            f"  unpack+verify: kubeplay {best:.2f} s vs pigz+sha256sum {checked:.2f} s, speed-up {checked / best:.2f}x"
        )
        print(f"  plain tar -xzf of kubeplay's gzip: {plain_unpack:.2f} s ({peer_unpack / plain_unpack:.2f}x pigz -dc)")
        print("  (kubeplay hashes every file while it packs and unpacks; the plain peer checks nothing)")
    finally:
        os.environ.pop("KUBEPLAY_PIGZ", None)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
