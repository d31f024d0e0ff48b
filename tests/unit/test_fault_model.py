"""The simulator's fault paths as data: which registry GETs a fault with a target (`fail-manifests`,
`corrupt-digests`…) reaches, and what a file fault path parses to."""

from __future__ import annotations

import pytest

from kubeplay.lab.upstream.fault_model import Fault, parse_fault

TAG = "/v2/quay.io/app/manifests/v1"
CHILD = "/v2/quay.io/app/manifests/sha256:" + "a" * 64
BLOB = "/v2/quay.io/app/blobs/sha256:" + "b" * 64
UPLOAD = "/v2/quay.io/app/blobs/uploads/"


@pytest.mark.parametrize(
    ("kind", "reached"),
    [
        ("corrupt", {TAG, CHILD, BLOB}),
        ("corrupt-manifests", {TAG, CHILD}),
        ("fail-tags", {TAG}),
        ("corrupt-digests", {CHILD}),
        ("status-blobs", {BLOB}),
        ("cut-every", {TAG, CHILD, BLOB}),
    ],
)
def test_registry_fault_targets(kind: str, reached: set[str]) -> None:
    fault, rest = parse_fault([kind, "503", "quay.io", "app", "manifests", "v1"], registry=True)
    assert fault is not None and rest == ["quay.io", "app", "manifests", "v1"]
    assert {p for p in (TAG, CHILD, BLOB, UPLOAD, "/v2/") if fault.applies_to(p)} == reached


def test_parse_fault() -> None:
    assert parse_fault(["cut-every", "10", "github.com", "x"]) == (Fault("cut-every", 10), ["github.com", "x"])
    assert parse_fault(["corrupt", "github.com", "x"]) == (Fault("corrupt", 0), ["github.com", "x"])
    assert parse_fault(["fail-manifests", "2", "h"], registry=True) == (Fault("fail", 2, "manifests"), ["h"])
    assert parse_fault(["fail-manifests", "2", "h"]) == (None, [])  # targets are for registry paths only
    assert parse_fault(["nonsense-blobs", "2", "h"], registry=True) == (None, [])
    with pytest.raises(ValueError, match="not an HTTP status"):
        parse_fault(["status-manifests", "700", "h"], registry=True)
