"""Installing a patch-upgrade delta on a deploy node that serves the old version, against extracting the
full new bundle (issue 13's target: 3x faster). Never asserted.

The two bundles are modelled on a real default amd64 bundle of kubespray v2.31.0 (sizes as bench/delta.py
uses them: kubelet 58 MB, kubeadm 48 MB, kubectl 56 MB, calico/node 150 MB, ...; the rest of the files,
layers and OS packages scaled to a 900 MB bundle). Between 1.35.3 and 1.35.4 the three kube binaries and
the kube-* images' own layers change (their base layers, calico, coredns, the OS packages do not), which
gives a delta of about 13% of the bundle, the share bench/delta.py measures without patches.

- peer: `kubeplay extract` of the full new archive (every byte unpacked, hashed against SHA256SUMS)
- kubeplay: `kubeplay extract` of the delta archive, then adding it to the served set the old version was
  installed into (bootstrap.merge.add_bundle: plan, base check, hard links of what is served, digest
  check of every carried file, commit, version record). The repos' re-index is not part of it (the model
  carries no apt indexes), nor is starting services (the running ones serve the new content as it lands).

    .venv/bin/python bench/delta_install.py [--size-mb 900] [--rounds 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from kubeplay.assemble.delta import write_delta  # noqa: E402
from kubeplay.bootstrap.merge import add_bundle  # noqa: E402
from kubeplay.bootstrap.paths import HostPaths  # noqa: E402
from kubeplay.bootstrap.served import served_inventory  # noqa: E402
from kubeplay.bundle.base import load_base  # noqa: E402
from kubeplay.bundle.inventory import write_inventory  # noqa: E402
from kubeplay.bundle.manifest import (  # noqa: E402
    BundleManifest,
    KubesprayRecord,
    utc_now,
    write_manifest,
    write_sha256sums,
)
from kubeplay.console import Output  # noqa: E402

MB = 1_000_000
V2 = "registry/docker/registry/v2"
# (path pattern, MB, changes between patch versions)
UNCOMPRESSED = ("kubelet", "kubeadm", "kubectl", "runc.amd64", "calicoctl-linux-amd64")
FILES = [
    ("files/dl.k8s.io/release/v{v}/bin/linux/amd64/kubelet", 58, True),
    ("files/dl.k8s.io/release/v{v}/bin/linux/amd64/kubeadm", 48, True),
    ("files/dl.k8s.io/release/v{v}/bin/linux/amd64/kubectl", 56, True),
    ("files/github.com/etcd-io/etcd/releases/download/v3.5.21/etcd-v3.5.21-linux-amd64.tar.gz", 23, False),
    ("files/github.com/containernetworking/plugins/releases/download/v1.8.0/cni-plugins-linux-amd64-v1.8.0.tgz", 53, False),
    ("files/github.com/kubernetes-sigs/cri-tools/releases/download/v1.34.0/crictl-v1.34.0-linux-amd64.tar.gz", 19, False),
    ("files/github.com/opencontainers/runc/releases/download/v1.3.2/runc.amd64", 12, False),
    ("files/github.com/containerd/containerd/releases/download/v2.2.0/containerd-2.2.0-linux-amd64.tar.gz", 33, False),
    ("files/github.com/projectcalico/calico/releases/download/v3.30.3/calicoctl-linux-amd64", 66, False),
]  # fmt: skip
LAYERS = [  # (name, MB, changes)
    ("calico-node", 150, False), ("calico-cni", 95, False), ("calico-kube-controllers", 35, False),
    ("coredns", 21, False), ("nodelocaldns", 30, False), ("kube-base", 3, False), ("kube-iptables-base", 20, False),
    ("kube-apiserver", 25, True), ("kube-controller-manager", 23, True), ("kube-scheduler", 17, True),
    ("kube-proxy", 11, True), ("pause", 1, False), ("nginx", 20, False),
]  # fmt: skip
OS_PACKAGES_MB = 150
WHEELS_MB = 86  # ansible 57.6 MB + kubeplay and its dependencies 28.6 MB (bench/delta.py), the same in both


def _write(path: Path, size: int, binary: bool = False) -> str:
    """`size` bytes; their sha256. Compressed archives and layers are random (incompressible); a `binary`
    (an uncompressed Go executable: kubelet, kubectl...) packs to about half, as the real ones do with zstd."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(left, 1 << 20)
            chunk = os.urandom(n // 2) + bytes(range(256)) * (n // 512) if binary else os.urandom(n)
            chunk = chunk[:n].ljust(n, b"\0")
            fh.write(chunk)
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def _put(bundle: Path, rel: str, size: int, shared: dict[str, Path], key: str, binary: bool = False) -> None:
    """bundle/rel: a hard link to the file `shared[key]` when an earlier bundle wrote it, else new bytes."""
    dest = bundle / rel
    if key in shared:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.link(shared[key], dest)
    else:
        _write(dest, size, binary=binary)
        shared[key] = dest


def make_bundle(root: Path, version: str, scale: float, shared: dict[str, Path]) -> Path:
    """A bundle directory of `version`; unchanged content is hard-linked from `shared` (same bytes)."""
    bundle = root / f"kubeplay-{version}"
    for pattern, mb, changes in FILES:
        rel = pattern.format(v=version)
        _put(bundle, rel, int(mb * MB * scale), shared, rel if changes else pattern, rel.endswith(UNCOMPRESSED))
    for name, mb, changes in LAYERS:
        key = f"layer/{name}" + (f"/{version}" if changes else "")
        if key in shared:
            src = shared[key]
            dest = bundle / src.relative_to(src.parents[5])
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, dest)
            continue
        tmp = bundle / f"{V2}/blobs/.tmp"
        digest = _write(tmp, int(mb * MB * scale))
        dest = bundle / f"{V2}/blobs/sha256/{digest[:2]}/{digest}/data"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(dest)
        shared[key] = dest
    pool = "repos/apt/debian/bookworm/pool/main/p/pkg{i}/pkg{i}_1.0_amd64.deb"
    for i in range(30):
        rel = pool.format(i=i)
        _put(bundle, rel, int(OS_PACKAGES_MB / 30 * MB * scale), shared, rel)
    for i, mb in enumerate((57.6, 28.6)):
        rel = f"wheels/dep{i}-1.0-py3-none-any.whl"
        _put(bundle, rel, int(mb * MB * scale), shared, rel)
    (bundle / "install.sh").write_text("#!/bin/sh\n")
    write_manifest(
        bundle,
        BundleManifest(kubeplay_version="bench", created_at=utc_now(), spec={}, kube_version=version, arches=["amd64"],
                       kubespray=KubesprayRecord(version="v2.31.0", source="bench")),
    )  # fmt: skip
    write_sha256sums(bundle, use_cache=False)
    return bundle


def kubeplay(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "kubeplay", "--quiet", *args], capture_output=True, text=True,
                          check=False, env={**os.environ, "PYTHONPATH": str(REPO / "src")})  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"kubeplay {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mb", type=float, default=900.0, help="size of the full bundle (default 900 MB)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None, help="where to work (default: a temp dir under /var/tmp)")
    args = ap.parse_args()
    base_mb = sum(mb for _, mb, _ in FILES) + sum(mb for _, mb, _ in LAYERS) + OS_PACKAGES_MB + WHEELS_MB
    scale = args.size_mb / base_mb
    work = Path(tempfile.mkdtemp(prefix="kubeplay-bench-delta-install-", dir=args.workdir or "/var/tmp"))
    try:
        shared: dict[str, Path] = {}
        old = make_bundle(work / "build", "1.35.3", scale, shared)
        new = make_bundle(work / "build", "1.35.4", scale, shared)

        kubeplay("pack", str(new), "-o", str(work / "packed-full"))
        (full_archive,) = (work / "packed-full").glob("*.tar.zst")
        full_t: list[float] = []
        delta_t: list[float] = []
        delta_bytes = 0
        for r in range(args.rounds):
            # the deploy node: the old version served
            node = HostPaths(root=work / f"node{r}")
            add_bundle(old, node)
            inv = work / f"inventory{r}.json"
            write_inventory(served_inventory(node), inv)
            dest = _delta_from_builder(new, inv)
            packed = work / f"packed-delta{r}"
            kubeplay("pack", str(dest), "-o", str(packed))
            (delta_archive,) = packed.glob("*.tar.zst")
            delta_bytes = delta_archive.stat().st_size
            for fn, into in ((full_t, "x-full"), (delta_t, "x-delta")):
                target = work / f"{into}{r}"
                target.mkdir()
                started = time.perf_counter()
                if fn is full_t:
                    kubeplay("extract", str(full_archive), "--dest", str(target))
                else:
                    kubeplay("extract", str(delta_archive), "--dest", str(target))
                    (unpacked,) = [p for p in target.iterdir() if p.is_dir()]
                    # extract checked every file against SHA256SUMS as it wrote it, as install.sh does
                    sums = hashlib.sha256((unpacked / "SHA256SUMS").read_bytes()).hexdigest()
                    done = add_bundle(unpacked, node, verified_sums=sums)
                    assert not done.already and done.kube_version == "1.35.4"
                fn.append(time.perf_counter() - started)
                shutil.rmtree(target)
            shutil.rmtree(node.root)
        full_s, delta_s = sorted(full_t)[len(full_t) // 2], sorted(delta_t)[len(delta_t) // 2]
        print(f"full bundle {full_archive.stat().st_size / MB:.0f} MB packed; delta {delta_bytes / MB:.0f} MB packed "
              f"({delta_bytes / full_archive.stat().st_size:.1%})")  # fmt: skip
        print(
            f"peer  kubeplay extract of the full new bundle: {full_s:.2f} s (rounds {', '.join(f'{t:.2f}' for t in full_t)})"
        )
        print(
            f"kubeplay extract of the delta + add to the served set: {delta_s:.2f} s (rounds {', '.join(f'{t:.2f}' for t in delta_t)})"
        )
        print(f"delta install is {full_s / delta_s:.1f}x faster than extracting the full bundle (target 3x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _delta_from_builder(full: Path, inventory: Path) -> Path:
    """The delta the builder writes for `full` against `inventory` (kubeplay.assemble.delta), beside it."""
    result = write_delta(full, load_base(inventory), base_content=None, out=Output(quiet=True))
    return result.path


if __name__ == "__main__":
    main()
