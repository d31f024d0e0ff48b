"""Manifest kinds, and cutting a multi-arch index down to the platforms a bundle asks for.

Each kept platform manifest stays byte-exact (its digest is upstream's); the cut index is a new document
listing just the kept descriptors in upstream order. Attestation entries (`unknown/unknown`) are dropped.
(The bundle serves upstream's index under the tag and keeps the cut one by digest: assemble/images.py.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

# kubeplay arch -> (GOARCH, acceptable variants; None = no variant given)
ARCH_PLATFORMS: dict[str, tuple[str, tuple[str | None, ...]]] = {
    "amd64": ("amd64", (None, "v1", "v2", "v3")),
    "arm64": ("arm64", (None, "v8")),
}


def platform_string(platform: dict[str, Any]) -> str:
    text = f"{platform.get('os', '?')}/{platform.get('architecture', '?')}"
    return f"{text}/{platform['variant']}" if platform.get("variant") else text


def media_type_of(data: bytes, header: str | None) -> str:
    """The manifest's media type: its own mediaType field, else the Content-Type header."""
    try:
        doc = json.loads(data)
    except ValueError:
        doc = {}
    declared = doc.get("mediaType") if isinstance(doc, dict) else None
    if isinstance(declared, str) and declared:
        return declared
    ctype = (header or "").split(";")[0].strip()
    if ctype in INDEX_TYPES | MANIFEST_TYPES:
        return ctype
    if isinstance(doc, dict) and "manifests" in doc:
        return OCI_INDEX
    return OCI_MANIFEST if isinstance(doc, dict) and "layers" in doc else ctype


@dataclass(frozen=True)
class Selection:
    chosen: dict[str, dict[str, Any]]  # kubeplay arch -> descriptor (as upstream wrote it)
    missing: list[str]
    index: bytes  # the index to store: upstream's bytes when nothing was dropped


def select_platforms(index_bytes: bytes, arches: list[str] | tuple[str, ...]) -> Selection:
    """Pick one linux descriptor per requested arch; build the index that lists only those."""
    doc = json.loads(index_bytes)
    descriptors: list[dict[str, Any]] = list(doc.get("manifests") or [])
    chosen: dict[str, dict[str, Any]] = {}
    for arch in arches:
        goarch, variants = ARCH_PLATFORMS[arch]
        for desc in descriptors:
            plat = desc.get("platform") or {}
            if plat.get("os") == "linux" and plat.get("architecture") == goarch and plat.get("variant") in variants:
                chosen[arch] = desc
                break
    missing = [a for a in arches if a not in chosen]
    kept_ids = {id(d) for d in chosen.values()}
    kept = [d for d in descriptors if id(d) in kept_ids]
    if len(kept) == len(descriptors):
        return Selection(chosen, missing, index_bytes)
    new_doc = dict(doc)
    new_doc["manifests"] = kept
    return Selection(chosen, missing, json.dumps(new_doc, indent=3).encode())


def manifest_blobs(manifest_bytes: bytes) -> list[tuple[str, int]]:
    """(digest, size) of the config and every layer of an image manifest."""
    doc = json.loads(manifest_bytes)
    if doc.get("schemaVersion") == 1:
        raise ValueError("schema 1 manifests are not supported")
    out: list[tuple[str, int]] = []
    config = doc.get("config")
    if isinstance(config, dict):
        out.append((str(config["digest"]), int(config.get("size", 0))))
    for layer in doc.get("layers") or []:
        if layer.get("urls"):
            continue  # foreign layers (Windows base images) are never pulled from the registry
        out.append((str(layer["digest"]), int(layer.get("size", 0))))
    return out


def config_platform(config_bytes: bytes) -> dict[str, Any]:
    doc = json.loads(config_bytes)
    return {k: doc.get(k) for k in ("os", "architecture", "variant") if doc.get(k)}


def arch_of_platform(platform: dict[str, Any]) -> str | None:
    for arch, (goarch, variants) in ARCH_PLATFORMS.items():
        if platform.get("architecture") == goarch and platform.get("variant") in variants:
            return arch
    return None
