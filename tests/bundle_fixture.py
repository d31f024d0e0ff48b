"""Small synthetic bundle directories for the pack/verify/extract tests: real layout, real manifest, real sums."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import zstandard

from kubeplay.bundle.install_files import add_install_files
from kubeplay.bundle.manifest import (
    BundleManifest,
    FileRecord,
    ImageRecord,
    KubesprayRecord,
    write_manifest,
    write_sha256sums,
)

KUBE_VERSION = "1.33.4"
STEM = f"kubeplay-{KUBE_VERSION}-amd64"
BLOBS = "registry/docker/registry/v2/blobs/sha256"
KUBEADM = "files/dl.k8s.io/release/v1.33.4/bin/linux/amd64/kubeadm"


def _blob(root: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = root / BLOBS / digest[:2] / digest / "data"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def _seeded_bytes(seed: str, size: int) -> bytes:
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def make_bundle(root: Path) -> Path:
    """Write a bundle at `root`: kubespray tree, a file, a registry with one image, an apt repo, manifest, sums."""
    root.mkdir(parents=True)
    (root / "kubespray/playbooks").mkdir(parents=True)
    (root / "kubespray/README.md").write_text("# kubespray\n")
    (root / "kubespray/requirements.txt").write_text("ansible==11.13.0\njmespath==1.1.0\nnetaddr==1.3.0\n")
    (root / "kubespray/playbooks/ansible_version.yml").write_text(
        "- hosts: all\n  vars:\n    minimal_ansible_version: 2.18.0\n    maximal_ansible_version: 2.19.0\n"
    )
    kubeadm = root / KUBEADM
    kubeadm.parent.mkdir(parents=True)
    kubeadm.write_bytes(_seeded_bytes("kubeadm", 300_000) + b"\0" * 200_000)
    kubeadm.chmod(0o755)
    layer = _blob(root, _seeded_bytes("layer", 150_000))
    config = _blob(root, json.dumps({"architecture": "amd64", "os": "linux"}).encode())
    manifest_body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "digest": f"sha256:{config}",
                "size": 40,
                "mediaType": "application/vnd.oci.image.config.v1+json",
            },
            "layers": [{"digest": f"sha256:{layer}", "size": 150_000, "mediaType": "application/vnd.oci.image.layer"}],
        }
    ).encode()
    manifest_digest = _blob(root, manifest_body)
    tags = root / "registry/docker/registry/v2/repositories/library/pause/_manifests/tags/3.10/current"
    tags.mkdir(parents=True)
    (tags / "link").write_text(f"sha256:{manifest_digest}")
    release = root / "repos/apt/debian/bookworm/dists/bookworm/Release"
    release.parent.mkdir(parents=True)
    release.write_text("Origin: kubeplay\nSuite: bookworm\n")
    (root / "config-sample.yaml").write_text("compose:\n  internal_ip: ''\n")
    data = kubeadm.read_bytes()
    manifest = BundleManifest(
        kubeplay_version="0.1.0",
        created_at="2025-01-01T00:00:00Z",
        spec={},
        kubespray=KubesprayRecord(version="v2.31.0", source="test"),
        kube_version=KUBE_VERSION,
        arches=["amd64"],
        files=[
            FileRecord(
                name="kubeadm",
                arch="amd64",
                url="https://dl.k8s.io/release/v1.33.4/bin/linux/amd64/kubeadm",
                path=KUBEADM,
                variable="kubeadm_download_url",
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        ],
        images=[
            ImageRecord(
                name="pause",
                variable="pod_infra_image",
                upstream="registry.k8s.io/pause:3.10",
                upstream_digest=f"sha256:{manifest_digest}",
                repository="library/pause",
                tag="3.10",
                digest=f"sha256:{manifest_digest}",
                media_type="application/vnd.oci.image.manifest.v1+json",
                platforms=[],
                size=len(manifest_body) + 150_040,
            )
        ],
    )
    write_manifest(root, manifest)
    write_sha256sums(root, use_cache=False)
    return root


def install_sh_bundle(bundle: Path) -> Path:
    """Only what install.sh checks, at `bundle`, with wheels for no real Python: once its checks pass,
    install.sh stops saying "no Python here matches the bundle's wheels" (exit 2)."""
    (bundle / "wheels").mkdir(parents=True)
    (bundle / "wheels/requirements-cp30-nomachine.txt").write_text("")
    (bundle / "kubeplay.json").write_text("{}")
    add_install_files(bundle, kube_version=KUBE_VERSION, arches=["amd64"], with_wheels=False)
    write_sha256sums(bundle, use_cache=False)
    return bundle


def run_install_sh(
    bundle: Path, venv: Path, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`sh bundle/install.sh ARGS…` with only PATH and `env` set, its venv at `venv`, no /usr/local/bin link."""
    return subprocess.run(
        ["sh", str(bundle / "install.sh"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "KUBEPLAY_LINK": "", "KUBEPLAY_VENV": str(venv), **env},
        check=False,
    )


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Change one byte of `path` in place (the middle one unless told)."""
    data = bytearray(path.read_bytes())
    index = len(data) // 2 if offset is None else offset
    data[index] ^= 0x01
    path.write_bytes(bytes(data))


def tree_digests(root: Path) -> dict[str, str]:
    """sha256 of every regular file below `root`, by relative path."""
    out = {}
    for current, _dirs, names in os.walk(root):
        for name in names:
            path = Path(current) / name
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def write_tar_zst(path: Path, build: Callable[[tarfile.TarFile], None]) -> Path:
    """Write a .tar.zst whose members `build` adds by hand (for crafting hostile archives)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    path.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(raw.getvalue()))
    return path


def write_tar_gz(path: Path, build: Callable[[tarfile.TarFile], None]) -> Path:
    """Write a .tar.gz (as `tar czf` would, no kubeplay header field) whose members `build` adds by hand."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    path.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    return path


def add_file(tar: tarfile.TarFile, name: str, data: bytes = b"x", mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def add_special(tar: tarfile.TarFile, name: str, kind: bytes, linkname: str = "", mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    tar.addfile(info)
