"""What a deploy node serves, or a bundle holds, as digests only: the base a delta bundle is built against.

`kubeplay status --inventory` writes one from the deploy node's served set; a bundle directory (or its
archive) stands in for one. It lists every bundle-relative path with its sha256 and size, the images
(repository, tag, digest), OS packages (name, version, arch), wheels and kubespray versions, and the
identity of every bundle it came from. It carries no content, so it fits on any medium.

A bundle's identity is the sha256 of its `kubeplay.json` bytes: a delta completed on the deploy node
has the same `kubeplay.json`, so the same identity, as the full bundle of that version.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubeplay.bundle.manifest import MANIFEST_NAME, SIGNATURE_NAME, SUMS_NAME, utc_now
from kubeplay.errors import BadInput

INVENTORY_FORMAT = 1
INVENTORY_KIND: Literal["kubeplay-inventory"] = "kubeplay-inventory"
# Files every bundle has its own copy of: never left out of a delta, never merged into the served set.
TOP_LEVEL_OWN = frozenset({MANIFEST_NAME, SUMS_NAME, SIGNATURE_NAME, "install.sh", "config-sample.yaml", "delta.json"})


def identity_of(manifest_bytes: bytes) -> str:
    """A bundle's identity: the sha256 of its kubeplay.json."""
    return hashlib.sha256(manifest_bytes).hexdigest()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BundleRef(_Model):
    """One bundle (full, or a delta once completed) that contributed to what is listed."""

    identity: str = Field(description="sha256 of its kubeplay.json")
    kube_version: str
    kubespray_version: str
    arches: list[str] = Field(default_factory=list)
    installed_at: str | None = Field(default=None, description="when the deploy node added it (UTC)")


class Entry(_Model):
    sha256: str
    size: int = Field(default=0, description="bytes; 0 when the source did not say")


class ImageRef(_Model):
    repository: str
    tag: str | None = None
    digest: str


class PackageRef(_Model):
    family: Literal["apt", "rpm"]
    distro: str
    release: str
    name: str
    version: str
    arch: str
    sha256: str
    path: str


class Inventory(_Model):
    format: int = INVENTORY_FORMAT
    kind: Literal["kubeplay-inventory"] = INVENTORY_KIND
    created_at: str = Field(default_factory=utc_now)
    source: str = Field(description="what it was taken from: a deploy node, a bundle directory or an archive")
    bundles: list[BundleRef]
    paths: dict[str, Entry] = Field(description="every bundle-relative path with its digest and size")
    images: list[ImageRef] = Field(default_factory=list)
    packages: list[PackageRef] = Field(default_factory=list)
    wheels: dict[str, str] = Field(default_factory=dict, description="wheel file name -> sha256")
    kubespray: list[str] = Field(default_factory=list, description="kubespray versions")

    @property
    def identities(self) -> list[str]:
        return [b.identity for b in self.bundles]

    def digests(self) -> dict[str, int]:
        """Every sha256 present, with its size: what a delta against this base may leave out."""
        out: dict[str, int] = {}
        for e in self.paths.values():
            out[e.sha256] = max(out.get(e.sha256, 0), e.size)
        return out

    def describe(self) -> str:
        versions = ", ".join(f"{b.kube_version} ({b.identity[:12]})" for b in self.bundles) or "nothing"
        return f"{self.source}: {versions}"


def bundle_ref(manifest_bytes: bytes, installed_at: str | None = None) -> BundleRef:
    """The BundleRef of a kubeplay.json; raise BadInput when it is not one."""
    try:
        m = json.loads(manifest_bytes)
    except ValueError as exc:
        raise BadInput(f"{MANIFEST_NAME}: not JSON: {exc}") from None
    if not isinstance(m, dict) or "kube_version" not in m:
        raise BadInput(f"{MANIFEST_NAME}: not a kubeplay manifest (no kube_version)")
    spray = m.get("kubespray") or {}
    return BundleRef(
        identity=identity_of(manifest_bytes),
        kube_version=str(m["kube_version"]),
        kubespray_version=str(spray.get("version", "")) if isinstance(spray, dict) else "",
        arches=[str(a) for a in m.get("arches") or []],
        installed_at=installed_at,
    )


_DEB = re.compile(r"^(?P<name>[^_]+)_(?P<version>[^_]+)_(?P<arch>[^_]+)\.deb$")
_RPM = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+-[^-]+)\.(?P<arch>[^.]+)\.rpm$")


def package_of(path: str, sha256: str) -> PackageRef | None:
    """The OS package a bundle path holds (repos/apt/<distro>/<codename>/pool/…/*.deb, repos/rpm/…/*.rpm)."""
    parts = path.split("/")
    if len(parts) < 5 or parts[0] != "repos" or parts[1] not in ("apt", "rpm"):
        return None
    name = parts[-1]
    match = _DEB.match(name) if parts[1] == "apt" else _RPM.match(name)
    if match is None:
        return None
    return PackageRef(
        family=parts[1],  # type: ignore[arg-type]
        distro=parts[2],
        release=parts[3],
        name=match["name"],
        version=unquote(match["version"]),
        arch=match["arch"],
        sha256=sha256,
        path=path,
    )


def images_of(manifest: Mapping[str, Any]) -> list[ImageRef]:
    """The images (and charts, which are OCI artifacts too) a kubeplay.json lists."""
    out = []
    for rec in [*(manifest.get("images") or []), *(manifest.get("charts") or [])]:
        if isinstance(rec, dict) and rec.get("repository") and rec.get("digest"):
            out.append(ImageRef(repository=rec["repository"], tag=rec.get("tag"), digest=rec["digest"]))
    return out


def make_inventory(
    source: str,
    manifests: Iterable[tuple[bytes, str | None]],
    paths: Mapping[str, Entry],
) -> Inventory:
    """An inventory of `paths` (the union of the listed bundles' content) and the bundles' manifests
    (kubeplay.json bytes, and when each was installed)."""
    bundles: list[BundleRef] = []
    images: dict[tuple[str, str | None, str], ImageRef] = {}
    for body, installed_at in manifests:
        bundles.append(bundle_ref(body, installed_at))
        for ref in images_of(json.loads(body)):
            images[(ref.repository, ref.tag, ref.digest)] = ref
    packages = [p for rel, e in sorted(paths.items()) if (p := package_of(rel, e.sha256)) is not None]
    wheels = {rel.split("/")[-1]: e.sha256 for rel, e in paths.items() if rel.startswith("wheels/")}
    return Inventory(
        source=source,
        bundles=bundles,
        paths=dict(sorted(paths.items())),
        images=sorted(images.values(), key=lambda i: (i.repository, i.tag or "", i.digest)),
        packages=packages,
        wheels=dict(sorted(wheels.items())),
        kubespray=sorted({b.kubespray_version for b in bundles if b.kubespray_version}),
    )


def write_inventory(inv: Inventory, dest: Path) -> None:
    from kubeplay.state import atomic_write  # noqa: PLC0415

    atomic_write(dest, inv.model_dump_json(indent=1).encode() + b"\n")


def read_inventory(path: Path) -> Inventory:
    """An inventory.json; raise BadInput naming the file and the first problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return Inventory.model_validate_json(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise BadInput(
            f"{path}: not a kubeplay inventory ({where}: {err['msg']})",
            hint="write one on the deploy node with `kubeplay status --inventory -o inventory.json`",
        ) from None
