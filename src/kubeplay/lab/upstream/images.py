"""Small, deterministic, real container images (gzip'd tar layers, config JSON, manifests, indexes).

Every image gets three layers per platform:
  1. `<base>` common layer — identical for every image with the same `base`, on every arch;
  2. `<base>` per-arch layer — identical for every image with the same `base` and arch;
  3. the image's own layer — `layer_kib` KiB of incompressible bytes, unique per image, tag and arch.
So a set of images shares blobs across images and across arches, as real ones do.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass, field
from typing import Literal

from kubeplay.errors import BadInput

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

KNOWN_ARCHES = ("amd64", "arm64", "arm", "ppc64le", "s390x", "riscv64")
CREATED = "2024-01-01T00:00:00Z"

IndexFormat = Literal["oci", "docker"]


@dataclass(frozen=True)
class ImageRef:
    repository: str  # "<upstream-host>/<path>", e.g. registry.k8s.io/pause
    tag: str

    @property
    def host(self) -> str:
        return self.repository.split("/", 1)[0]

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"


def parse_upstream_ref(ref: str) -> ImageRef:
    """`quay.io/calico/node:v3.29.1` -> ImageRef; Docker Hub short names become docker.io/library/<name>."""
    if "@" in ref:
        raise BadInput(f"push_image needs a tag, not a digest: {ref!r}")
    name, tag = ref, "latest"
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = ref.rsplit(":", 1)
    first = name.split("/", 1)[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name}"
    host, path = name.split("/", 1)
    if host == "docker.io" and "/" not in path:
        path = f"library/{path}"
    if not path or name != name.lower():
        raise BadInput(f"not a valid image reference: {ref!r}")
    return ImageRef(repository=f"{host}/{path}", tag=tag)


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


@dataclass(frozen=True)
class PlatformImage:
    arch: str
    variant: str | None
    config: Blob
    layers: tuple[Blob, ...]
    manifest: Blob  # media_type is the manifest's; data the exact bytes pushed

    @property
    def platform(self) -> str:
        return f"linux/{self.arch}" + (f"/{self.variant}" if self.variant else "")


@dataclass
class ImageInfo:
    """What push_image wrote: the digest clients resolve the tag to, and every digest below it."""

    reference: str  # "<repository>:<tag>" as pushed, e.g. registry.k8s.io/pause:3.10
    repository: str
    tag: str
    digest: str  # of the index/manifest list, or of the single manifest
    media_type: str
    manifests: dict[str, str] = field(default_factory=dict)  # platform "linux/arm64/v8" -> manifest digest
    blobs: list[str] = field(default_factory=list)  # config and layer digests, all platforms, no repeats
    sizes: dict[str, int] = field(default_factory=dict)  # digest -> size for manifests and blobs


def _payload(seed: str, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def make_layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A reproducible gzip'd tar of `files`; returns (compressed bytes, diff_id of the uncompressed tar)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for path in sorted(files):
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(info)
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(files[path]), 0o755, 0
            tar.addfile(info, io.BytesIO(files[path]))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, compresslevel=1, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def build_platform_image(
    ref: ImageRef, arch: str, variant: str | None, *, base: str, layer_kib: int, fmt: IndexFormat
) -> PlatformImage:
    layer_type, config_type, manifest_type = (
        (OCI_LAYER, OCI_CONFIG, OCI_MANIFEST) if fmt == "oci" else (DOCKER_LAYER, DOCKER_CONFIG, DOCKER_MANIFEST)
    )
    specs: list[dict[str, bytes]] = []
    if base:
        specs.append({f"etc/{base}-release": f"NAME={base}\nID=kubeplay-lab\n".encode()})
        specs.append({f"lib/{base}/libbase-{arch}.so": _payload(f"base/{base}/{arch}", 16 * 1024)})
    binary = ref.repository.rsplit("/", 1)[-1]
    specs.append({f"usr/local/bin/{binary}": _payload(f"app/{ref}/{arch}/{variant}", layer_kib * 1024)})
    layers: list[Blob] = []
    diff_ids: list[str] = []
    for files in specs:
        compressed, diff_id = make_layer(files)
        layers.append(Blob(layer_type, compressed))
        diff_ids.append(diff_id)
    config: dict[str, object] = {
        "architecture": arch,
        "os": "linux",
        "created": CREATED,
        "config": {"Entrypoint": [f"/usr/local/bin/{binary}"], "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": CREATED, "created_by": f"kubeplay lab layer {i}"} for i in range(len(layers))],
    }
    if variant:
        config["variant"] = variant
    config_blob = Blob(config_type, json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config_blob.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    manifest_blob = Blob(manifest_type, json.dumps(manifest, indent=3).encode())
    return PlatformImage(arch, variant, config_blob, tuple(layers), manifest_blob)


def build_index(platforms: list[PlatformImage], fmt: IndexFormat) -> Blob:
    """An OCI image index or Docker manifest list naming each platform manifest."""
    media_type = OCI_INDEX if fmt == "oci" else DOCKER_LIST
    entries = []
    for p in platforms:
        platform: dict[str, str] = {"architecture": p.arch, "os": "linux"}
        if p.variant:
            platform["variant"] = p.variant
        entries.append({**p.manifest.descriptor(), "platform": platform})
    return Blob(media_type, json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}).encode())


def check_arches(arches: list[str]) -> list[str]:
    if not arches:
        raise BadInput("push_image needs at least one arch")
    unknown = [a for a in arches if a not in KNOWN_ARCHES]
    if unknown:
        raise BadInput(f"unknown arch {unknown[0]!r}; known: {', '.join(KNOWN_ARCHES)}")
    return list(dict.fromkeys(arches))
