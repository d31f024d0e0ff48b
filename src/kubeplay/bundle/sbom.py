"""`sbom.cdx.json`: a CycloneDX 1.6 bill of materials of everything a bundle carries, and its check.

Components (each with the bundle path it occupies as the property `kubeplay:path`, and its sha256):
kubespray (pkg:github), every file of the plan (pkg:generic with download_url and checksum), every
image as served (pkg:oci, the index or manifest digest, repository_url, tag) with one component per
platform manifest (arch qualifier) that the index depends on, every OS package of the bundle's repos
(pkg:deb / pkg:rpm with arch and distro), every wheel (pkg:pypi), and kubeplay's own files (install.sh,
kubeplay.json, repo indexes, keys) as `file` components; each Helm chart as its package (files/charts/) with
the OCI artifact serving it as a dependency. The bundle is the metadata component and
depends on every top-level component. The registry's blobs and repository links are accounted for by
the images: a blob belongs to an image when its manifest reaches it. SHA256SUMS lists the SBOM, so the
bundle signature covers it; the SBOM cannot list itself.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kubeplay import __version__
from kubeplay.bundle.manifest import (
    BUILD_STATE_DIR,
    MANIFEST_NAME,
    SIGNATURE_NAME,
    SUMS_NAME,
    BundleManifest,
    ChartRecord,
    ImageRecord,
)
from kubeplay.bundle.repo_packages import repo_packages
from kubeplay.bundle.wheels import wheel_name_version
from kubeplay.errors import BadInput
from kubeplay.state import atomic_write

SBOM_NAME = "sbom.cdx.json"
PATH_PROPERTY = "kubeplay:path"
REPOSITORY_PROPERTY = "kubeplay:repository"
REGISTRY_ROOT = "registry/docker/registry/v2"
BLOBS = f"{REGISTRY_ROOT}/blobs/sha256"
REPOSITORIES = f"{REGISTRY_ROOT}/repositories"
_SBOM_CACHE = "sbom-cache.json"
_NAMESPACE = uuid.UUID("6f0b1a56-5d55-4e4b-9a0e-6b7562706c61")


def blob_path(digest: str) -> str:
    hexdigest = digest.removeprefix("sha256:")
    return f"{BLOBS}/{hexdigest[:2]}/{hexdigest}/data"


def _split_reference(upstream: str) -> str:
    """`host/path/name` of `host/path/name:tag@sha256:…`."""
    repository = upstream.split("@", 1)[0]
    head, _, last = repository.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def _import_cyclonedx() -> Any:
    try:
        from cyclonedx.model.bom import Bom  # noqa: PLC0415  (the build extra; the deploy node never needs it)
    except ImportError:
        raise BadInput(
            "writing sbom.cdx.json needs cyclonedx-python-lib and packageurl-python",
            hint="install kubeplay with its build extra: pip install 'kubeplay[build]'",
        ) from None
    return Bom


@dataclass
class _Parts:
    """Components and dependencies collected before the Bom is made."""

    top: list[Any] = field(default_factory=list)
    children: dict[str, list[Any]] = field(default_factory=dict)
    claimed: set[str] = field(default_factory=set)


def _component(kind: str, name: str, ref: str, *, path: str | None, sha256: str | None, **extra: Any) -> Any:
    from cyclonedx.model import HashAlgorithm, HashType, Property  # noqa: PLC0415
    from cyclonedx.model.component import Component, ComponentType  # noqa: PLC0415

    properties = [Property(name=k, value=v) for k, v in extra.pop("properties", {}).items() if v]
    if path is not None:
        properties.insert(0, Property(name=PATH_PROPERTY, value=path))
    hashes = [HashType(alg=HashAlgorithm.SHA_256, content=sha256)] if sha256 else []
    return Component(type=ComponentType(kind), name=name, bom_ref=ref, hashes=hashes, properties=properties, **extra)


def _purl(kind: str, name: str, version: str | None, namespace: str | None = None, **qualifiers: str | None) -> Any:
    from packageurl import PackageURL  # noqa: PLC0415

    kept = {k: v for k, v in qualifiers.items() if v}
    return PackageURL(type=kind, namespace=namespace, name=name, version=version, qualifiers=kept or None)


def _distribution(url: str) -> list[Any]:
    from cyclonedx.model import ExternalReference, ExternalReferenceType, XsUri  # noqa: PLC0415

    if "://" not in url:
        return []
    return [ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(url))]


def _kubespray(manifest: BundleManifest, parts: _Parts) -> None:
    record = manifest.kubespray
    parts.top.append(
        _component(
            "framework",
            "kubespray",
            "kubespray",
            path=f"{record.path}/",
            sha256=record.sha256,
            version=record.version,
            purl=_purl("github", "kubespray", record.version, "kubernetes-sigs"),
            external_references=_distribution(record.source),
        )
    )


def _files(manifest: BundleManifest, parts: _Parts) -> None:
    for record in manifest.files:
        purl = _purl(
            "generic", record.name, record.version, arch=record.arch, download_url=record.url,
            checksum=f"sha256:{record.sha256}",
        )  # fmt: skip
        parts.top.append(
            _component(
                "file" if record.version is None else "application",
                record.name,
                f"file:{record.path}",
                path=record.path,
                sha256=record.sha256,
                version=record.version,
                purl=purl,
                external_references=_distribution(record.url),
                properties={"kubeplay:variable": record.variable, "kubeplay:arch": record.arch},
            )
        )
        parts.claimed.add(record.path)


def _image(image: ImageRecord, parts: _Parts) -> None:
    repository_url = _split_reference(image.upstream)
    name = repository_url.rsplit("/", 1)[-1].lower()
    properties = {
        "kubeplay:variable": image.variable,
        REPOSITORY_PROPERTY: image.repository,
        "kubeplay:upstream": image.upstream,
        "kubeplay:upstream_digest": image.upstream_digest,
        "kubeplay:signatures": " ".join(image.signatures),  # upstream signature tags kept beside it
    }

    def manifest(digest: str, media_type: str, arch: str | None = None, **more: str) -> Any:
        """The image index or manifest stored as blob `digest` (a platform's manifest names its arch)."""
        return _component(
            "container",
            name,
            f"image:{image.repository}@{digest}",
            path=blob_path(digest),
            sha256=digest.removeprefix("sha256:"),
            version=image.tag or digest,
            purl=_purl("oci", name, digest, arch=arch, repository_url=repository_url, tag=image.tag),
            properties=properties | more | {"kubeplay:media_type": media_type},
        )

    top = manifest(image.digest, image.media_type)
    parts.top.append(top)
    parts.children[str(top.bom_ref)] = [
        manifest(platform.digest, platform.media_type, platform.arch, **{"kubeplay:platform": platform.platform})
        for platform in image.platforms
        if platform.digest != image.digest
    ]
    if image.cut_index:  # upstream's index is served; this one lists only the bundled platforms
        parts.children[str(top.bom_ref)].append(
            manifest(image.cut_index, image.media_type, **{"kubeplay:index": "bundled platforms only"})
        )


def _chart(chart: ChartRecord, parts: _Parts) -> None:
    """A Helm chart: its package under files/charts/, and (depending on it) the OCI artifact serving it."""
    properties = {"kubeplay:variable": chart.location, "kubeplay:upstream": chart.source}
    package = _component(
        "application",
        chart.name,
        f"chart:{chart.path}",
        path=chart.path,
        sha256=chart.sha256,
        version=chart.version,
        purl=_purl("generic", chart.name, chart.version, download_url=chart.source),
        properties=properties,
    )
    artifact = _component(
        "application",
        chart.name,
        f"chart:{chart.repository}@{chart.digest}",
        path=blob_path(chart.digest),
        sha256=chart.digest.removeprefix("sha256:"),
        version=chart.version,
        purl=_purl("oci", chart.name, chart.digest, tag=chart.tag),
        properties=properties | {REPOSITORY_PROPERTY: chart.repository},
    )
    parts.top.append(package)
    parts.children[str(package.bom_ref)] = [artifact]
    parts.claimed.add(chart.path)


def _signatures(bundle_dir: Path, image: ImageRecord, parts: _Parts) -> None:
    """One `data` component per upstream signature artifact kept beside `image` (by its tag)."""
    repository_url = _split_reference(image.upstream)
    name = repository_url.rsplit("/", 1)[-1].lower()
    tags = bundle_dir / REPOSITORIES / image.repository / "_manifests" / "tags"
    for tag in image.signatures:
        try:
            digest = (tags / tag / "current" / "link").read_text(encoding="utf-8").strip()
        except OSError:
            continue  # the sums check names what is missing
        parts.top.append(
            _component(
                "data",
                f"{name} {tag.rpartition('.')[2] if '.' in tag else 'referrers'}",
                f"signature:{image.repository}:{tag}",
                path=blob_path(digest),
                sha256=digest.removeprefix("sha256:"),
                version=tag,
                purl=_purl("oci", name, digest, repository_url=repository_url, tag=tag),
                properties={REPOSITORY_PROPERTY: image.repository, "kubeplay:signs": image.upstream},
            )
        )


def _os_packages(bundle_dir: Path, manifest: BundleManifest, parts: _Parts) -> None:
    for package in repo_packages(bundle_dir, manifest.os_repos):
        kind = "deb" if package.family == "apt" else "rpm"
        purl = _purl(
            kind, package.name, package.version, package.distro, arch=package.arch, epoch=package.epoch,
            distro=f"{package.distro}-{package.release}",
        )  # fmt: skip
        parts.top.append(
            _component(
                "library",
                package.name,
                f"{kind}:{package.path}",
                path=package.path,
                sha256=package.sha256,
                version=package.version,
                purl=purl,
            )
        )
        parts.claimed.add(package.path)


def _wheels_and_own_files(sums: Mapping[str, str], manifest: BundleManifest, parts: _Parts) -> None:
    kubespray_dir = f"{manifest.kubespray.path}/"
    for path, digest in sorted(sums.items()):
        if path in parts.claimed or path.startswith((kubespray_dir, "registry/")) or path == SBOM_NAME:
            continue
        if path.startswith("wheels/") and path.endswith(".whl"):
            name, version = wheel_name_version(path.rsplit("/", 1)[-1])
            parts.top.append(
                _component(
                    "library",
                    name,
                    f"wheel:{path}",
                    path=path,
                    sha256=digest,
                    version=version,
                    purl=_purl("pypi", name.lower().replace("_", "-"), version),
                )
            )
        else:  # written by kubeplay itself: install files, kubeplay.json, repo indexes and keys
            parts.top.append(_component("file", path, f"own:{path}", path=path, sha256=digest))


def build_sbom(bundle_dir: Path, manifest: BundleManifest, sums: Mapping[str, str]) -> str:
    """The CycloneDX 1.6 JSON text for the bundle at `bundle_dir`, from its manifest and SHA256SUMS digests.

    Deterministic for the same inputs (serial number derived from them, timestamp = the build time).
    Raises BadInput when cyclonedx-python-lib is not installed.
    """
    bom_class = _import_cyclonedx()
    from cyclonedx.model.bom import BomMetaData  # noqa: PLC0415
    from cyclonedx.model.component import Component, ComponentType  # noqa: PLC0415
    from cyclonedx.model.tool import ToolRepository  # noqa: PLC0415
    from cyclonedx.output.json import JsonV1Dot6  # noqa: PLC0415

    parts = _Parts()
    _kubespray(manifest, parts)
    _files(manifest, parts)
    for image in manifest.images:
        _image(image, parts)
        _signatures(bundle_dir, image, parts)
    for chart in manifest.charts:
        _chart(chart, parts)
    _os_packages(bundle_dir, manifest, parts)
    _wheels_and_own_files(sums, manifest, parts)
    version = manifest.kube_version.removeprefix("v")
    root = Component(
        type=ComponentType.PLATFORM,
        name=f"kubeplay-bundle-{version}-{'-'.join(manifest.arches)}",
        version=version,
        bom_ref="bundle",
        description=f"kubeplay {manifest.kubeplay_version} bundle: kubespray {manifest.kubespray.version}",
    )
    serial = _serial(manifest, sums)
    created = datetime.fromisoformat(manifest.created_at.replace("Z", "+00:00"))
    tools = ToolRepository(components=[Component(type=ComponentType.APPLICATION, name="kubeplay", version=__version__)])
    bom = bom_class(serial_number=serial, metadata=BomMetaData(component=root, timestamp=created, tools=tools))
    every = list(parts.top) + [c for children in parts.children.values() for c in children]
    for component in every:
        bom.components.add(component)
    bom.register_dependency(root, parts.top)
    by_ref = {str(c.bom_ref): c for c in parts.top}
    for ref, children in parts.children.items():
        bom.register_dependency(by_ref[ref], children)
    text: str = JsonV1Dot6(bom).output_as_string(indent=None)
    return text


def _serial(manifest: BundleManifest, sums: Mapping[str, str]) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, json.dumps(sorted(sums.items())) + manifest.created_at)


def _content_key(manifest: BundleManifest, sums: Mapping[str, str]) -> str:
    """What the SBOM depends on, except the build time and kubeplay.json's digest (both change every build)."""
    kept = {p: d for p, d in sums.items() if p not in (MANIFEST_NAME, SBOM_NAME)}
    data = {"kubeplay": __version__, "sums": kept, "manifest": manifest.model_dump(mode="json", exclude={"created_at"})}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _refreshed(text: str, manifest: BundleManifest, sums: Mapping[str, str]) -> str | None:
    """An SBOM of the same content with this build's time, serial number and kubeplay.json digest."""
    document = json.loads(text)
    own = [c for c in document.get("components", []) if c.get("bom-ref") == f"own:{MANIFEST_NAME}"]
    if len(own) != 1 or MANIFEST_NAME not in sums:
        return None
    own[0]["hashes"] = [{"alg": "SHA-256", "content": sums[MANIFEST_NAME]}]
    document["serialNumber"] = f"urn:uuid:{_serial(manifest, sums)}"
    created = datetime.fromisoformat(manifest.created_at.replace("Z", "+00:00"))
    document["metadata"]["timestamp"] = created.isoformat()
    return json.dumps(document, separators=(",", ":"))


def write_sbom(bundle_dir: Path, manifest: BundleManifest, sums: Mapping[str, str]) -> Path:
    """Write `sbom.cdx.json` atomically; return its path.

    A rebuild whose content did not change (same digests, same manifest but for its time) reuses the
    previous SBOM with the new time and kubeplay.json digest: generating one costs tenths of a second,
    a large part of a no-change rebuild.
    """
    path = bundle_dir / SBOM_NAME
    cache = bundle_dir / BUILD_STATE_DIR / _SBOM_CACHE
    key = _content_key(manifest, sums)
    text = None
    with suppress(OSError, ValueError, KeyError, TypeError):
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved["key"] == key:
            text = _refreshed(saved["sbom"], manifest, sums)
    if text is None:
        text = build_sbom(bundle_dir, manifest, sums)
        if cache.parent.is_dir():
            atomic_write(cache, json.dumps({"key": key, "sbom": text}).encode())
    atomic_write(path, text.encode())
    return path


@dataclass
class Coverage:
    """What SHA256SUMS lists that the SBOM does not account for, and what the SBOM names that is not there."""

    unlisted: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not (self.unlisted or self.absent)


def _properties(component: Mapping[str, Any]) -> dict[str, str]:
    return {p["name"]: p.get("value", "") for p in component.get("properties", [])}


def _reachable_blobs(bundle_dir: Path, digests: Iterable[str]) -> set[str]:
    """Blob paths reachable from the manifests `digests` name: child manifests, configs, layers."""
    seen: set[str] = set()
    pending = list(digests)
    while pending:
        digest = pending.pop()
        path = blob_path(digest)
        if path in seen:
            continue
        seen.add(path)
        try:
            document = json.loads((bundle_dir / path).read_bytes())
        except (OSError, ValueError):
            continue  # a layer, or missing: the sums check names it
        if not isinstance(document, dict):
            continue
        for entry in [*document.get("manifests", []), *document.get("layers", []), document.get("config") or {}]:
            if isinstance(entry, dict) and isinstance(entry.get("digest"), str):
                pending.append(entry["digest"])
    return seen


def check_coverage(bundle_dir: Path, sbom_text: str, sums: Mapping[str, str]) -> Coverage:
    """Compare the SBOM with SHA256SUMS: every listed path accounted for, every SBOM path listed.

    A path is accounted for by a component's `kubeplay:path` (a directory path ending in / covers the
    tree below it), or, under registry/, by an image: blobs its manifests reach and its repository's links.
    """
    document = json.loads(sbom_text)
    components = document.get("components", [])
    paths = [_properties(c).get(PATH_PROPERTY) for c in components]
    exact = {p for p in paths if p and not p.endswith("/")}
    trees = tuple(p for p in paths if p and p.endswith("/"))
    images = [c for c in components if REPOSITORY_PROPERTY in _properties(c)]
    digests = [h["content"] for c in images for h in c.get("hashes", []) if h.get("alg") == "SHA-256"]
    blobs = _reachable_blobs(bundle_dir, [f"sha256:{d}" for d in digests])
    repositories = tuple(f"{REPOSITORIES}/{_properties(c).get(REPOSITORY_PROPERTY)}/" for c in images)
    coverage = Coverage()
    for path in sorted(sums):
        if path in (SBOM_NAME, SUMS_NAME, SIGNATURE_NAME) or path.startswith(BUILD_STATE_DIR):
            continue
        if path in exact or path.startswith(trees) or path in blobs or path.startswith(repositories):
            continue
        coverage.unlisted.append(path)
    listed = set(sums)
    coverage.absent = sorted(p for p in exact if p not in listed)
    coverage.absent += sorted(t for t in trees if not any(p.startswith(t) for p in listed))
    return coverage
