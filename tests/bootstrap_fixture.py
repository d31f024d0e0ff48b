"""A small but real bundle for install tests and bench/serve.py: registry storage with valid images, files,
a kubeplay.json that kubeplay.bundle.manifest accepts, and SHA256SUMS."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import shutil
import tarfile
from pathlib import Path

import pytest

from kubeplay.bundle.manifest import (
    BundleManifest,
    FileRecord,
    ImageRecord,
    KubesprayRecord,
    OsRepoRecord,
    utc_now,
    write_manifest,
    write_sha256sums,
)
from kubeplay.console import Output

V2 = Path("registry/docker/registry/v2")
# Tests that start the deploy node's serving half (real distribution registry and nginx) carry this mark.
NEEDS_REGISTRY_AND_NGINX = pytest.mark.skipif(
    not (Path("/usr/bin/docker-registry").exists() and (shutil.which("nginx") or Path("/usr/sbin/nginx").exists())),
    reason="needs docker-registry and nginx (Debian packages)",
)
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_blob(bundle: Path, data: bytes) -> str:
    d = _digest(data)
    hexd = d.split(":", 1)[1]
    path = bundle / V2 / "blobs/sha256" / hexd[:2] / hexd / "data"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return d


def _link(path: Path, digest: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(digest)


_TEXT = b"".join(
    random.Random(7).choice([b"kube", b"let ", b"proxy", b"\x00\x00\x00\x00", b"ELF", b"/usr/lib/", b"\n"])
    for _ in range(8192)
)


def _payload(rng: random.Random, size: int, compressible: bool) -> bytes:
    """Random bytes, or content that gzip shrinks about 2.5x, like the binaries and text in real layers."""
    if not compressible:
        return rng.randbytes(size)
    blocks = []
    for _ in range(size // 4096 + 1):
        start = rng.randrange(len(_TEXT) - 2560)
        blocks.append(rng.randbytes(1536) + _TEXT[start : start + 2560])
    return b"".join(blocks)[:size]


def make_layer(seed: int, size: int, compressible: bool = False) -> tuple[bytes, str]:
    """A gzip'd tar holding one file of `size` pseudo-random bytes: (compressed, diff_id)."""
    rng = random.Random(seed)
    payload = _payload(rng, size, compressible)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"data/file-{seed}.bin")
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    uncompressed = raw.getvalue()
    return gzip.compress(uncompressed, compresslevel=6 if compressible else 1, mtime=0), _digest(uncompressed)


def add_image(bundle: Path, repository: str, tag: str, layers: list[tuple[bytes, str]], arch: str = "amd64") -> str:
    """Write one single-platform OCI image into the bundle registry storage; return its manifest digest."""
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff for _, diff in layers]},
        },
        sort_keys=True,
    ).encode()
    repo = bundle / V2 / "repositories" / repository
    cfg_digest = put_blob(bundle, config)
    descs = []
    for blob, _ in layers:
        d = put_blob(bundle, blob)
        _link(repo / "_layers/sha256" / d.split(":")[1] / "link", d)
        descs.append({"mediaType": MT_LAYER, "digest": d, "size": len(blob)})
    _link(repo / "_layers/sha256" / cfg_digest.split(":")[1] / "link", cfg_digest)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": cfg_digest, "size": len(config)},
            "layers": descs,
        },
        indent=2,
    ).encode()
    md = put_blob(bundle, manifest)
    hexd = md.split(":")[1]
    _link(repo / "_manifests/revisions/sha256" / hexd / "link", md)
    _link(repo / "_manifests/tags" / tag / "current/link", md)
    _link(repo / "_manifests/tags" / tag / "index/sha256" / hexd / "link", md)
    return md


def make_bundle(
    root: Path,
    images: int = 2,
    layers_per_image: int = 2,
    layer_size: int = 4096,
    arches: tuple[str, ...] = ("amd64",),
    os_repos: tuple[tuple[str, str, str], ...] = (("debian", "12", "bookworm"),),
    compressible: bool = False,
) -> Path:
    """Write a bundle directory under `root`; return it. Images share one base layer, like real ones."""
    bundle = root / "bundle"
    base = make_layer(0, layer_size, compressible)
    image_records = []
    for i in range(images):
        layers = [base] + [
            make_layer(1000 * (i + 1) + j, layer_size, compressible) for j in range(layers_per_image - 1)
        ]
        repo = f"library/registry.example/app{i}"
        md = add_image(bundle, repo, f"v1.{i}", layers)
        size = sum(len(b) for b, _ in layers)
        image_records.append(
            ImageRecord(
                name=f"app{i}",
                variable=f"app{i}_image_repo",
                upstream=f"registry.example/app{i}:v1.{i}",
                upstream_digest=md,
                repository=repo,
                tag=f"v1.{i}",
                digest=md,
                media_type=MT_MANIFEST,
                size=size,
            )
        )
    files = []
    for name, data in (("kubectl", b"#!/bin/sh\necho kubectl\n"), ("notes.txt", b"hello from the bundle\n" * 50)):
        rel = f"files/dl.example/v1/linux/amd64/{name}"
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_bytes(data)
        files.append(
            FileRecord(
                name=name,
                arch="amd64",
                url=f"https://dl.example/v1/linux/amd64/{name}",
                path=rel,
                variable=f"{name}_download_url",
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    repo_records = []
    for distro, release, codename in os_repos:
        rel = f"repos/apt/{distro}/{codename}"
        (bundle / rel / "dists" / codename).mkdir(parents=True, exist_ok=True)
        (bundle / rel / "dists" / codename / "Release").write_text(f"Suite: {codename}\nComponents: main\n")
        repo_records.append(OsRepoRecord(family="apt", distro=distro, release=release, arches=list(arches), path=rel))
    write_manifest(
        bundle,
        BundleManifest(
            kubeplay_version="0.1.0",
            created_at=utc_now(),
            spec={},
            kubespray=KubesprayRecord(version="v2.31.0", source="test"),
            kube_version="1.35.0",
            arches=list(arches),
            files=files,
            images=image_records,
            os_repos=repo_records,
        ),
    )
    write_sha256sums(bundle, use_cache=False)
    return bundle


SAMPLE_CONFIG = """\
compose:
  # empty: detected
  internal_ip: {ip}
  nginx_http_port: {http_port}
  registry_domain: kube.registry.local
kubespray:
  kube_version: v1.35.0
  kube_network_plugin: calico
inventory:
  all:
    vars:
      ansible_user: root
    hosts:
      node1:
        ansible_host: 10.77.0.21
    children:
      kube_control_plane:
        hosts:
          node1:
default:
  ntp_server:
    - internal_ip
  registry_ip: internal_ip
  offline_resources_url: internal_ip:nginx_http_port
  generate_domain_crt: true
  registry_https_port: {https_port}
  registry_push_port: {push_port}
"""


DEBIAN_12 = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'


def make_context(
    tmp_path: Path,
    bundle: Path,
    ports: tuple[int, int, int] = (8080, 8443, 5000),
    ip: str = "127.0.0.1",
    domain: str = "kube.registry.local",
) -> object:
    """An InstallContext writing under tmp_path/root instead of /, for steps that need no package manager."""
    from kubeplay.bootstrap.bundleinfo import read_bundle
    from kubeplay.bootstrap.context import InstallContext
    from kubeplay.bootstrap.hostinfo import parse_os_release
    from kubeplay.bootstrap.paths import HostPaths
    from kubeplay.bootstrap.record import InstallRecord
    from kubeplay.config.install import load_install_config, resolve

    http, https, push = ports
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(
        SAMPLE_CONFIG.format(ip=ip, http_port=http, https_port=https, push_port=push).replace(
            "kube.registry.local", domain
        )
    )
    eff = resolve(load_install_config(cfg_path), cfg_path, None, 8)
    paths = HostPaths(root=tmp_path / "root")
    paths.hosts_file.parent.mkdir(parents=True, exist_ok=True)
    if not paths.hosts_file.exists():
        paths.hosts_file.write_text("127.0.0.1 localhost\n")
    return InstallContext(
        cfg=eff,
        bundle=read_bundle(bundle),
        paths=paths,
        os_info=parse_os_release(DEBIAN_12),
        arch="amd64",
        no_systemd=True,
        record=InstallRecord.load(paths.record),
        out=Output(quiet=True),
    )


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on loopback (bound to port 0, then released)."""
    import socket

    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports
