"""The CNCF distribution registry serving the bundle's registry/ directory, and reading that layout."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from kubeplay.bootstrap.render import render

REGISTRY_BINARIES = ("/usr/bin/docker-registry", "/usr/bin/registry", "/usr/local/bin/registry")
# OS packages that ship it: Debian/Ubuntu docker-registry; Fedora/EPEL 7 docker-distribution, distribution.
REGISTRY_PACKAGES = ("docker-registry", "docker-distribution", "distribution")
V2 = Path("docker/registry/v2")


def registry_binary() -> str | None:
    """The distribution registry binary (Debian package docker-registry, or `registry` elsewhere)."""
    for candidate in REGISTRY_BINARIES:
        if Path(candidate).is_file():
            return candidate
    return shutil.which("docker-registry") or shutil.which("registry")


def render_registry_config(storage_dir: Path, push_port: int) -> str:
    return render("registry.yml.j2", storage_dir=storage_dir, push_port=push_port)


def render_registry_unit(registry_bin: str, registry_conf: Path) -> str:
    return render("kubeplay-registry.service.j2", registry_bin=registry_bin, registry_conf=registry_conf)


@dataclass(frozen=True)
class TaggedImage:
    repository: str
    tag: str
    digest: str


def blob_path(storage_dir: Path, digest: str) -> Path:
    algo, _, hexd = digest.partition(":")
    return storage_dir / V2 / "blobs" / algo / hexd[:2] / hexd / "data"


def tagged_images(storage_dir: Path) -> list[TaggedImage]:
    """Every repository:tag in a registry storage tree, with the manifest digest it points at (sorted)."""
    repos_root = storage_dir / V2 / "repositories"
    found: list[TaggedImage] = []
    if not repos_root.is_dir():
        return found
    for link in sorted(repos_root.glob("**/_manifests/tags/*/current/link")):
        tag_dir = link.parent.parent
        repo_dir = tag_dir.parent.parent.parent
        repository = repo_dir.relative_to(repos_root).as_posix()
        found.append(TaggedImage(repository, tag_dir.name, link.read_text().strip()))
    return found


def untagged_images(storage_dir: Path) -> list[TaggedImage]:
    """Top-level manifests no tag reaches (images bundle.yaml pins by digest only), as TaggedImage with the
    digest for tag; sorted. A manifest whose children are not all stored is left out: that is an upstream
    index kept beside a cut one only so pulls by its digest resolve (its other platforms were never fetched)."""
    repos_root = storage_dir / V2 / "repositories"
    found: list[TaggedImage] = []
    for revisions in sorted(repos_root.glob("**/_manifests/revisions/sha256")):
        repo_dir = revisions.parent.parent.parent
        stored = {f"sha256:{p.name}" for p in revisions.iterdir() if (p / "link").is_file()}
        stored = {digest for digest in stored if blob_path(storage_dir, digest).is_file()}  # verify names the rest
        reached = {link.read_text().strip() for link in repo_dir.glob("_manifests/tags/*/current/link")}
        children = {digest: manifest_children(storage_dir, digest)[1] for digest in sorted(stored)}
        reached.update(child for kids in children.values() for child in kids)
        for digest in sorted(stored - reached):
            if all(child in stored for child in children[digest]):
                found.append(TaggedImage(repo_dir.relative_to(repos_root).as_posix(), digest, digest))
    return found


def manifest_children(storage_dir: Path, digest: str) -> tuple[str, list[str], list[str]]:
    """(media type, child manifest digests, blob digests) of a manifest in the storage tree."""
    doc = json.loads(blob_path(storage_dir, digest).read_bytes())
    media = doc.get("mediaType", "")
    if "manifests" in doc:
        return media, [m["digest"] for m in doc["manifests"]], []
    blobs = [doc["config"]["digest"]] if "config" in doc else []
    blobs += [layer["digest"] for layer in doc.get("layers", [])]
    return media, [], blobs
