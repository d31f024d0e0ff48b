"""`kubeplay build` against a registry that misbehaves, through the simulator's fault proxy: a manifest
whose bytes do not match the digest its tag or index gives, blobs with wrong bytes, 503s on manifests
that pass and that do not. What a user sees: the exit code, the image and digest named, the other items
kept, and nothing unverified stored in the bundle's registry."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests import build_fixture as fx

from kubeplay.catalog.model import Plan
from kubeplay.lab.upstream import UpstreamSimulator
from kubeplay.lab.upstream.images import ImageInfo

pytestmark = pytest.mark.integration

REGISTRY = "registry/docker/registry/v2"
FAULTY_HOST = "quay.io"  # every image of this host goes through the fault proxy
GOOD_HOST = "ghcr.io"


@dataclass
class Outcome:
    code: int
    stderr: str  # whitespace collapsed: rich wraps long lines
    events: list[dict[str, object]]
    out: Path


@dataclass
class Scene:
    faulty: ImageInfo
    good: ImageInfo
    file_url: str
    file_data: bytes
    plan: Plan


def scene(upstream: UpstreamSimulator, case: str) -> Scene:
    """A faulty-host image, a good-host image and a file, all with names unique to `case`."""
    faulty = upstream.push_image(f"{FAULTY_HOST}/kp-regf-{case}/app:v1", ["amd64", "arm64"], base=f"kp-regf-{case}")
    good = upstream.push_image(f"{GOOD_HOST}/kp-regf-{case}/ok:v1", ["amd64", "arm64"], base=f"kp-regf-{case}-ok")
    file_url = f"https://dl.k8s.io/kp-regf-{case}/kubectl"
    file_data = os.urandom(50_000)
    upstream.add_file(file_url, file_data)
    plan = fx.make_plan(
        [fx.file_artifact(file_url, file_data, name="kubectl")],
        [fx.image_artifact(faulty.reference, name="app"), fx.image_artifact(good.reference, name="ok")],
    )
    return Scene(faulty, good, file_url, file_data, plan)


def build_through(upstream: UpstreamSimulator, tmp_path: Path, s: Scene, fault: str, *args: str) -> Outcome:
    """`kubeplay --json-events build` with FAULTY_HOST's registry mirror behind `fault`."""
    archive, sha = fx.kubespray_archive(tmp_path / "src")
    mirrors = fx.mirrors_with(upstream, quay_io=upstream.registry_fault_mirror(fault, FAULTY_HOST))
    spec = fx.write_spec(tmp_path, upstream, str(archive), sha, mirrors=mirrors)
    out = tmp_path / "bundle"
    upstream.reset_faults()
    proc = fx.kubeplay_with_plan(s.plan, tmp_path, "--json-events", "build", str(spec), "-o", str(out), *args)
    stdout, stderr = proc.communicate(timeout=300)
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return Outcome(proc.returncode, " ".join(stderr.split()), events, out)


def tags(out: Path, upstream_ref: str) -> list[str]:
    """The tags the bundle registry holds for an upstream image (stored as library/<host>/<path>)."""
    repository = upstream_ref.rsplit(":", 1)[0]
    folder = out / REGISTRY / "repositories/library" / repository / "_manifests/tags"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def unverified_blobs(out: Path) -> list[str]:
    """Blobs in the bundle registry whose bytes do not hash to their name (must be none, whatever failed)."""
    bad = []
    for data in (out / REGISTRY / "blobs/sha256").glob("*/*/data"):
        if hashlib.sha256(data.read_bytes()).hexdigest() != data.parent.name:
            bad.append(data.parent.name)
    return bad


def stored_digests(out: Path) -> set[str]:
    return {"sha256:" + p.parent.name for p in (out / REGISTRY / "blobs/sha256").glob("*/*/data")}


def assert_others_kept(result: Outcome, s: Scene) -> None:
    assert tags(result.out, s.good.reference) == ["v1"]
    assert (result.out / "files/dl.k8s.io" / s.file_url.split("dl.k8s.io/")[1]).read_bytes() == s.file_data
    assert unverified_blobs(result.out) == []
    assert tags(result.out, s.faulty.reference) == []
    assert not (result.out / "SHA256SUMS").exists()  # a failed build publishes no checksum list


def test_index_whose_bytes_do_not_match_its_tag_digest(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    s = scene(upstream, "tagdigest")
    result = build_through(upstream, tmp_path, s, "corrupt-tags/0")
    assert result.code == 1, result.stderr
    assert (
        f"{s.faulty.reference} (app_image_repo): digest mismatch: registry says {s.faulty.digest}, content has sha256:"
        in result.stderr
    )
    assert "1 item(s) failed" in result.stderr
    assert_others_kept(result, s)
    assert not set(s.faulty.manifests.values()) & stored_digests(result.out)


def test_platform_manifest_whose_bytes_do_not_match_the_index(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    s = scene(upstream, "childdigest")
    result = build_through(upstream, tmp_path, s, "corrupt-digests/0")
    assert result.code == 1, result.stderr
    children = sorted(s.faulty.manifests.values())
    named = [d for d in children if f"digest mismatch: expected {d}, got sha256:" in result.stderr]
    assert len(named) == 1 and f"{s.faulty.reference} (app_image_repo):" in result.stderr
    assert_others_kept(result, s)
    assert not set(children) & stored_digests(result.out)


def test_blobs_with_wrong_bytes_are_not_kept(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    s = scene(upstream, "blobs")
    result = build_through(upstream, tmp_path, s, "corrupt-blobs/0")
    assert result.code == 1, result.stderr
    assert f"{s.faulty.reference} (app_image_repo): blob sha256:" in result.stderr
    assert "sha256 mismatch: expected" in result.stderr and "nothing was kept" in result.stderr
    assert_others_kept(result, s)
    own = set(s.faulty.blobs) - set(s.good.blobs)
    assert not own & stored_digests(result.out)  # not one of its blobs, nor a .part of one
    assert not list((result.out / REGISTRY / "blobs").rglob("*.part"))


def test_manifests_answering_503_a_few_times_are_retried(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    s = scene(upstream, "retry")
    # --no-signatures: only the image's own manifest requests are counted below (signature tags are GETs too)
    result = build_through(upstream, tmp_path, s, "fail-manifests/2", "--no-signatures")
    assert result.code == 0, result.stderr
    assert tags(result.out, s.faulty.reference) == ["v1"]
    assert set(s.faulty.blobs) | set(s.faulty.manifests.values()) <= stored_digests(result.out)
    assert fx.sha256sum_check(result.out).returncode == 0
    manifest_gets = [r for r in upstream.fault_requests() if "/manifests/" in str(r["path"]) and r["method"] == "GET"]
    # the tag and each platform manifest: two 503s, then the answer (the tag's after the token challenge)
    by_path: dict[str, list[object]] = {}
    for r in manifest_gets:
        by_path.setdefault(str(r["path"]), []).append(r["status"])
    assert len(by_path) == 1 + len(s.faulty.manifests)
    assert all(s[:2] == [503, 503] and s[-1] == 200 and 503 not in s[2:] for s in by_path.values()), by_path


def test_manifests_answering_503_for_good_fail_naming_the_image(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    s = scene(upstream, "down")
    result = build_through(upstream, tmp_path, s, "status-manifests/503", "--retries", "3")
    assert result.code == 1, result.stderr
    assert (
        f"{s.faulty.reference} (app_image_repo): HTTP 503 Service Unavailable (gave up after 3 tries)" in result.stderr
    )
    assert_others_kept(result, s)
