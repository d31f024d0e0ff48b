"""The registry v2 storage layout: paths as distribution expects them, idempotent writes, pruning."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kubeplay.errors import BundleError, DigestMismatch
from kubeplay.store.registry import RegistryStorage, RepositoryContent


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_layout_matches_distribution_paths(tmp_path: Path) -> None:
    store = RegistryStorage(tmp_path)
    blob, manifest = b"layer", b'{"schemaVersion":2}'
    d, m = digest(blob), digest(manifest)
    store.put_blob(d, blob)
    store.put_blob(m, manifest)
    store.link_blob("library/registry.k8s.io/pause", d)
    store.link_manifest("library/registry.k8s.io/pause", m)
    store.tag("library/registry.k8s.io/pause", "3.10", m)
    v2 = tmp_path / "docker/registry/v2"
    assert (v2 / "blobs/sha256" / d[7:9] / d[7:] / "data").read_bytes() == blob
    repo = v2 / "repositories/library/registry.k8s.io/pause"
    assert (repo / "_layers/sha256" / d[7:] / "link").read_bytes() == d.encode()
    assert (repo / "_manifests/revisions/sha256" / m[7:] / "link").read_bytes() == m.encode()
    assert (repo / "_manifests/tags/3.10/current/link").read_bytes() == m.encode()
    assert (repo / "_manifests/tags/3.10/index/sha256" / m[7:] / "link").read_bytes() == m.encode()
    assert list(store.repositories()) == ["library/registry.k8s.io/pause"]
    assert store.tag_digest("library/registry.k8s.io/pause", "3.10") == m


def test_wrong_content_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DigestMismatch):
        RegistryStorage(tmp_path).put_blob(digest(b"a"), b"b")


def test_bad_names_are_refused(tmp_path: Path) -> None:
    store = RegistryStorage(tmp_path)
    with pytest.raises(BundleError):
        store.link_blob("../escape", digest(b"a"))
    with pytest.raises(BundleError):
        store.tag("ok", "bad/tag", digest(b"a"))


def test_prune_removes_what_the_plan_dropped(tmp_path: Path) -> None:
    store = RegistryStorage(tmp_path)
    keep_blob, old_blob, keep_m, old_m = b"keep", b"old", b"{1}", b"{2}"
    for data in (keep_blob, old_blob, keep_m, old_m):
        store.put_blob(digest(data), data)
    store.link_blob("app", digest(keep_blob))
    store.link_blob("app", digest(old_blob))
    store.link_manifest("app", digest(keep_m))
    store.link_manifest("app", digest(old_m))
    store.tag("app", "v2", digest(keep_m))
    store.tag("app", "v1", digest(old_m))
    store.link_manifest("gone", digest(old_m))
    freed = store.prune({"app": RepositoryContent({"v2": digest(keep_m)}, {digest(keep_m)}, {digest(keep_blob)})})
    assert freed == len(old_blob) + len(old_m)
    assert list(store.repositories()) == ["app"]
    assert store.tag_digest("app", "v1") is None and store.tag_digest("app", "v2") == digest(keep_m)
    assert store.has_blob(digest(keep_blob)) and not store.has_blob(digest(old_blob))
