"""The bundle manifest `kubeplay.json` and `SHA256SUMS`: what a bundle holds, and the digest of every file.

`kubeplay.json` records the spec the bundle was built from, the kubespray release (version, sha256),
kube_version, arches, OS targets, every file and image with digest and size, tool versions and the build
time. `SHA256SUMS` lists every file of the bundle in `sha256sum` format, sorted by path; its own sha256
is what the build prints and what an operator compares after copying the bundle.

Files below `BUILD_STATE_DIR` (the build's resume state and caches) and unfinished `.part` downloads are
not part of the bundle: `bundle_files()` skips them, and so do SHA256SUMS and packing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubeplay.errors import BundleError
from kubeplay.state import atomic_write

MANIFEST_NAME = "kubeplay.json"
SUMS_NAME = "SHA256SUMS"
SIGNATURE_NAME = "SHA256SUMS.sig"  # SSHSIG over SHA256SUMS (bundle/trust.py); not listed in SHA256SUMS itself
BUILD_STATE_DIR = ".kubeplay-build"
PART_SUFFIX = ".part"
MANIFEST_FORMAT = 1
# The `files` record name of the distribution registry release archive (bundle.yaml `registry_binary`).
REGISTRY_BINARY_FILE = "kubeplay_registry_binary"
_HASH_CHUNK = 1 << 20
_DIGEST_CACHE = "sha256-cache.json"


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KubesprayRecord(Record):
    version: str
    source: str = Field(description="where it came from: URL (userinfo removed) or local path")
    sha256: str | None = Field(default=None, description="sha256 of the source archive; None for a local directory")
    path: str = Field(default="kubespray", description="bundle-relative directory holding the unmodified tree")


class FileRecord(Record):
    """One file from kubespray's download tables, as bundled under files/<host>/<path>."""

    name: str
    arch: str
    version: str | None = None
    url: str = Field(description="upstream URL (never a mirror URL with credentials)")
    path: str = Field(description="bundle-relative path")
    variable: str = Field(description="the kubespray variable the URL came from")
    size: int
    sha256: str
    checksum: str | None = Field(default=None, description="upstream checksum it was verified against, algo:hex")


class PlatformRecord(Record):
    """One platform manifest of an image, stored byte-exact (its digest equals upstream's)."""

    platform: str = Field(description="os/arch[/variant], e.g. linux/arm64/v8")
    arch: str = Field(description="kubeplay arch name: amd64 or arm64")
    digest: str
    media_type: str
    size: int = Field(description="size of the platform manifest")
    blobs_size: int = Field(description="config + layers of this platform, bytes")


class ImageRecord(Record):
    """One image: upstream reference and digest, where it sits in the bundle registry, its platforms."""

    name: str
    variable: str
    upstream: str = Field(description="upstream reference as kubespray names it")
    upstream_digest: str = Field(description="digest of the manifest or index upstream served for the reference")
    repository: str = Field(description="repository in the bundle registry")
    tag: str | None = None
    digest: str = Field(
        description="digest the reference resolves to in the bundle registry: upstream's (an index cut to the "
        "bundled platforms is served as upstream's bytes, so upstream's signatures of it match)"
    )
    media_type: str
    cut_index: str | None = Field(
        default=None,
        description="when upstream's index lists platforms the bundle lacks: the index listing only the bundled "
        "ones, stored by digest (what `kubeplay push` puts under the tag where a registry refuses upstream's)",
    )
    platforms: list[PlatformRecord] = Field(default_factory=list)
    missing_arches: list[str] = Field(default_factory=list, description="requested arches upstream lacks (warn)")
    signatures: list[str] = Field(
        default_factory=list, description="upstream signature tags kept beside it (.sig/.att/.sbom, referrers)"
    )
    size: int = Field(description="bytes of manifests and blobs this image references (blobs may be shared)")


class ChartRecord(Record):
    """One Helm chart (bundle.yaml charts:, or a dependency of one): its package under files/charts/ and
    the OCI artifact in the bundle registry whose chart layer is that same package."""

    name: str
    version: str
    source: str = Field(description="where the package came from: its URL, or oci://host/repository:version")
    location: str = Field(description="the bundle.yaml entry it came from, e.g. 'bundle.yaml charts[0]'")
    path: str = Field(description="bundle-relative path of the package, files/charts/<name>-<version>.tgz")
    sha256: str = Field(description="of the package; also index.yaml's digest and the OCI chart layer's")
    repository: str = Field(description="repository in the bundle registry, <project>/charts/<name>")
    tag: str
    digest: str = Field(description="digest of the OCI artifact's manifest")


class OsRepoRecord(Record):
    """One OS package repository in the bundle (written by kubeplay.osrepo)."""

    family: Literal["apt", "rpm"]
    distro: str
    release: str
    arches: list[str] = Field(default_factory=list)
    path: str = Field(description="bundle-relative repo root")
    packages: int = 0
    size: int = 0


class Totals(Record):
    files: int = 0
    files_size: int = 0
    images: int = 0
    blobs: int = 0
    blobs_size: int = Field(default=0, description="unique blob and manifest bytes in registry/")


class BundleManifest(Record):
    """The whole of `kubeplay.json`."""

    format: int = MANIFEST_FORMAT
    kubeplay_version: str
    created_at: str = Field(description="UTC, ISO 8601")
    spec: dict[str, Any] = Field(description="bundle.yaml as validated (no credentials: bundle.yaml holds none)")
    kubespray: KubesprayRecord
    kube_version: str
    arches: list[str]
    os: list[dict[str, Any]] = Field(default_factory=list, description="OS targets from the spec")
    files: list[FileRecord] = Field(default_factory=list)
    images: list[ImageRecord] = Field(default_factory=list)
    charts: list[ChartRecord] = Field(default_factory=list)
    os_repos: list[OsRepoRecord] = Field(default_factory=list)
    offline_vars: dict[str, str] = Field(default_factory=dict, description="kubespray vars pointing at the bundle")
    tools: dict[str, str] = Field(default_factory=dict, description="versions of the tools that built the bundle")
    totals: Totals = Field(default_factory=Totals)


def utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def write_manifest(bundle_dir: Path, manifest: BundleManifest) -> Path:
    """Write `kubeplay.json` atomically; return its path."""
    path = bundle_dir / MANIFEST_NAME
    body = manifest.model_dump_json(indent=2).encode() + b"\n"
    atomic_write(path, body)
    return path


def read_manifest(bundle_dir: Path) -> BundleManifest:
    """The bundle's `kubeplay.json`; raise BundleError when it is missing or invalid."""
    path = bundle_dir / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{bundle_dir}: not a kubeplay bundle (no {MANIFEST_NAME})") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return BundleManifest.model_validate_json(raw)
    except ValidationError as exc:
        raise BundleError(f"{path}: invalid manifest: {exc.errors()[0]['msg']}", hint="rebuild the bundle") from None


def is_bundle_file(relpath: str) -> bool:
    """True for paths SHA256SUMS lists (not build state, SHA256SUMS or its signature, not partial downloads)."""
    first = relpath.split("/", 1)[0]
    return first != BUILD_STATE_DIR and relpath not in (SUMS_NAME, SIGNATURE_NAME) and not relpath.endswith(PART_SUFFIX)


def bundle_files(bundle_dir: Path) -> Iterator[str]:
    """Bundle-relative POSIX paths of every regular file in the bundle, sorted; symlinks are refused."""
    found: list[str] = []
    pending = [("", str(bundle_dir))]
    while pending:
        prefix, directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if entry.is_symlink():
                    raise BundleError(
                        f"{entry.path}: symlink inside the bundle", hint="bundles hold regular files only"
                    )
                if entry.is_dir():
                    if rel != BUILD_STATE_DIR:
                        pending.append((rel + "/", entry.path))
                elif is_bundle_file(rel):
                    found.append(rel)
    yield from sorted(found)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stat_key(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def write_sha256sums(bundle_dir: Path, *, use_cache: bool = True, known: Mapping[str, str] | None = None) -> str:
    """Write SHA256SUMS for every bundle file; return the sha256 of SHA256SUMS itself.

    Digests of files unchanged since the last run (same size, mtime and inode) come from a cache in the
    build state directory, so a re-run does not re-read gigabytes of bundle. `known` maps bundle-relative
    paths to digests the caller verified while writing them (a download checked on the fly); those files
    are not read again either.
    """
    given = known or {}
    cache_path = bundle_dir / BUILD_STATE_DIR / _DIGEST_CACHE
    cache: dict[str, list[str]] = {}
    if use_cache and cache_path.is_file():
        try:
            cache = json.loads(cache_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cache = {}
    fresh: dict[str, list[str]] = {}
    lines: list[str] = []
    for rel in bundle_files(bundle_dir):
        path = bundle_dir / rel
        key = _stat_key(path)
        hit = cache.get(rel)
        digest = hit[1] if hit and hit[0] == key else given.get(rel) or sha256_file(path)
        fresh[rel] = [key, digest]
        lines.append(f"{digest}  {rel}\n")
    body = "".join(lines).encode()
    atomic_write(bundle_dir / SUMS_NAME, body)
    if use_cache:
        atomic_write(cache_path, json.dumps(fresh, separators=(",", ":")).encode())
    return hashlib.sha256(body).hexdigest()


def add_to_sha256sums(bundle_dir: Path, relpath: str) -> str:
    """Add (or replace) one file's line in SHA256SUMS, keeping the order; return SHA256SUMS's new sha256.

    For a file written after SHA256SUMS from its digests (sbom.cdx.json): no second walk of the bundle.
    """
    sums = read_sha256sums(bundle_dir / SUMS_NAME)
    sums[relpath] = sha256_file(bundle_dir / relpath)
    body = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(sums.items())).encode()
    atomic_write(bundle_dir / SUMS_NAME, body)
    return hashlib.sha256(body).hexdigest()


def read_sha256sums(path: Path) -> dict[str, str]:
    """SHA256SUMS as {bundle-relative path: hex digest}; raise BundleError on a malformed line."""
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BundleError(f"{path}: missing", hint="the bundle is incomplete; rebuild or copy it again") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep:
            digest, sep, name = line.partition(" *")
        digest = digest.lower()
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or not name:
            raise BundleError(f"{path}:{number}: not in sha256sum format")
        out[name] = digest
    return out
