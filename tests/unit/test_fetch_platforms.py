"""Cutting a multi-arch index to the requested platforms; child descriptors stay untouched."""

from __future__ import annotations

import json

from kubeplay.fetch.platforms import DOCKER_LIST, OCI_INDEX, manifest_blobs, media_type_of, select_platforms


def desc(arch: str, variant: str | None = None, os: str = "linux") -> dict[str, object]:
    plat: dict[str, str] = {"os": os, "architecture": arch}
    if variant:
        plat["variant"] = variant
    return {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{arch}{variant or ''}",
        "size": 1,
        "platform": plat,
    }


def index(*descs: dict[str, object]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(descs)}).encode()


def test_keeps_amd64_and_arm64_v8_drops_the_rest() -> None:
    raw = index(desc("amd64"), desc("arm", "v7"), desc("arm64", "v8"), desc("ppc64le"), desc("unknown", os="unknown"))
    sel = select_platforms(raw, ["amd64", "arm64"])
    assert sel.missing == []
    assert sorted(sel.chosen) == ["amd64", "arm64"]
    new = json.loads(sel.index)
    assert [m["platform"]["architecture"] for m in new["manifests"]] == ["amd64", "arm64"]
    assert new["manifests"][1] == desc("arm64", "v8")
    assert new["mediaType"] == OCI_INDEX


def test_nothing_dropped_keeps_upstream_bytes() -> None:
    raw = index(desc("amd64"), desc("arm64"))
    assert select_platforms(raw, ["amd64", "arm64"]).index == raw


def test_missing_arch_is_reported() -> None:
    sel = select_platforms(index(desc("amd64")), ["amd64", "arm64"])
    assert sel.missing == ["arm64"]


def test_media_type_from_document_or_header() -> None:
    assert media_type_of(json.dumps({"mediaType": DOCKER_LIST}).encode(), "text/plain") == DOCKER_LIST
    assert media_type_of(b'{"manifests": []}', None) == OCI_INDEX


def test_foreign_layers_are_not_fetched() -> None:
    doc = {
        "schemaVersion": 2,
        "config": {"digest": "sha256:c", "size": 10},
        "layers": [{"digest": "sha256:l", "size": 5}, {"digest": "sha256:f", "size": 9, "urls": ["https://x"]}],
    }
    assert manifest_blobs(json.dumps(doc).encode()) == [("sha256:c", 10), ("sha256:l", 5)]
