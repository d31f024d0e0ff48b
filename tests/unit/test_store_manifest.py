"""kubeplay.json and SHA256SUMS: round trip, what counts as a bundle file, a digest the tools agree on."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from kubeplay.bundle.manifest import (
    BUILD_STATE_DIR,
    BundleManifest,
    KubesprayRecord,
    read_manifest,
    read_sha256sums,
    utc_now,
    write_manifest,
    write_sha256sums,
)
from kubeplay.errors import BundleError


def _manifest() -> BundleManifest:
    return BundleManifest(
        kubeplay_version="0.1.0",
        created_at=utc_now(),
        spec={"kubespray": {"version": "v2.31.0"}},
        kubespray=KubesprayRecord(version="v2.31.0", source="https://example.invalid/k.tar.gz", sha256="0" * 64),
        kube_version="1.34.1",
        arches=["amd64", "arm64"],
    )


def test_manifest_round_trip(tmp_path: Path) -> None:
    write_manifest(tmp_path, _manifest())
    assert read_manifest(tmp_path) == _manifest().model_copy(update={"created_at": read_manifest(tmp_path).created_at})


def test_missing_manifest_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"no kubeplay\.json"):
        read_manifest(tmp_path)


def test_sha256sums_checks_with_sha256sum_and_skips_build_state(tmp_path: Path) -> None:
    (tmp_path / "files" / "dl.k8s.io").mkdir(parents=True)
    (tmp_path / "files" / "dl.k8s.io" / "kubeadm").write_bytes(b"kubeadm bytes")
    (tmp_path / "files" / "half.part").write_bytes(b"partial")
    (tmp_path / BUILD_STATE_DIR).mkdir()
    (tmp_path / BUILD_STATE_DIR / "state.json").write_text("{}")
    write_manifest(tmp_path, _manifest())
    own = write_sha256sums(tmp_path)
    sums = tmp_path / "SHA256SUMS"
    assert own == hashlib.sha256(sums.read_bytes()).hexdigest()
    assert sorted(read_sha256sums(sums)) == ["files/dl.k8s.io/kubeadm", "kubeplay.json"]
    ok = subprocess.run(
        ["sha256sum", "--check", "--strict", "SHA256SUMS"], check=False, cwd=tmp_path, capture_output=True, timeout=30
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_sha256sums_cache_notices_a_changed_file(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"one")
    write_sha256sums(tmp_path)
    f.write_bytes(b"two, longer")
    write_sha256sums(tmp_path)
    assert read_sha256sums(tmp_path / "SHA256SUMS")["a"] == hashlib.sha256(b"two, longer").hexdigest()
