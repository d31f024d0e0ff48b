"""`kubeplay build --base` against the simulator: a first bundle, then the next patch version built against
it. The delta carries exactly what the base lacks (the new kube-apiserver's own layer, not the base layers
it shares with the old one), base + delta is the full second bundle digest for digest, the changed
kubelet travels as a patch, `verify` and `pack` accept the delta, and `--base ARCHIVE` gives the same delta."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubeplay.bundle.delta import DELTA_NAME, apply_patch, full_sums_text, read_delta
from kubeplay.bundle.manifest import read_sha256sums
from kubeplay.bundle.pack import pack_checked_bundle
from kubeplay.bundle.trust import NAMESPACE, generate_key
from kubeplay.lab.upstream import UpstreamSimulator

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.build_fixture import (
    build_with_plan,
    file_artifact,
    image_artifact,
    kubeplay_with_plan,
    kubespray_archive,
    make_plan,
    write_spec,
)

pytestmark = pytest.mark.integration

KUBELET = "https://dl.k8s.io/release/v{v}/bin/linux/amd64/kubelet-kp-delta"
CNI = "https://github.com/containernetworking/plugins/releases/download/v1.6.0/cni-kp-delta-amd64.tgz"
APISERVER = "registry.k8s.io/kp-delta/kube-apiserver:v{v}"
PAUSE = "registry.k8s.io/kp-delta/pause:3.10"


def _kubelet(version: str) -> bytes:
    """Two patch versions of a binary: the same bytes but for a changed stretch and a longer tail."""
    block = b"".join(hashlib.sha256(f"kubelet {i}".encode()).digest() for i in range(8192))  # 256 KiB
    if version == "1.31.1":
        return block
    return block[:50_000] + hashlib.sha512(b"1.31.2").digest() * 40 + block[52_560:] + b"1.31.2\n" * 100


def _plan(upstream: UpstreamSimulator, version: str) -> object:
    return make_plan(
        [
            file_artifact(KUBELET.format(v=version), _kubelet(version), name="kubelet"),
            file_artifact(CNI, b"cni plugins\n" * 5000, name="cni"),
        ],
        [image_artifact(APISERVER.format(v=version), name="kube_apiserver"), image_artifact(PAUSE, name="pause")],
        kube_version=version,
    )


def _publish(upstream: UpstreamSimulator, tmp_path: Path) -> Path:
    """Both versions' files and images on the simulator (kube-apiserver images sharing their base layers);
    returns the bundle.yaml."""
    for version in ("1.31.1", "1.31.2"):
        upstream.push_image(APISERVER.format(v=version), ["amd64", "arm64"], base="kp-delta-base", layer_kib=96)
        upstream.add_file(KUBELET.format(v=version), _kubelet(version))
    upstream.push_image(PAUSE, ["amd64", "arm64"], base="kp-delta-base", layer_kib=8)
    upstream.add_file(CNI, b"cni plugins\n" * 5000)
    archive, sha = kubespray_archive(tmp_path / "src")
    return write_spec(tmp_path, upstream, str(archive), sha)


def _sums(root: Path) -> dict[str, str]:
    return read_sha256sums(root / "SHA256SUMS")


def _kubeplay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubeplay", *args], capture_output=True, text=True, timeout=300, check=False
    )


def without_record(sums: dict[str, str]) -> dict[str, str]:
    return {p: d for p, d in sums.items() if p != DELTA_NAME}


def _complete(base: Path, delta: Path, dest: Path) -> None:
    """base + delta -> the full bundle, as the deploy node does it: by digest from the base, patches applied."""
    record = read_delta(delta)
    assert record is not None
    by_digest = {d: base / p for p, d in _sums(base).items()}
    patches = {p.path: p for p in record.patches}
    for rel, entry in record.content.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel in patches:
            patch = patches[rel]
            apply_patch(by_digest[patch.base_sha256], delta / patch.patch, target, entry.sha256, entry.size)
        else:
            shutil.copy(delta / rel if (delta / rel).is_file() else by_digest[entry.sha256], target)
    (dest / "SHA256SUMS").write_bytes(full_sums_text(record.content))


def test_delta_build_against_a_bundle_directory_and_its_archive(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    spec = _publish(upstream, tmp_path)
    first = tmp_path / "first"
    result = build_with_plan(spec, first, _plan(upstream, "1.31.1"), wheels=False)
    assert result.ok, result.failures

    key = tmp_path / "keys/builder"
    generate_key(key, "builder@example")
    second = tmp_path / "out" / "second"
    work = tmp_path / "work"
    work.mkdir()
    args = ("build", str(spec), "-o", str(second), "--no-wheels", "--base", str(first), "--sign", str(key))
    proc = kubeplay_with_plan(_plan(upstream, "1.31.2"), work, *args)  # type: ignore[arg-type]
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    deltas = [p for p in second.parent.iterdir() if p.name.startswith("second-delta-")]
    assert len(deltas) == 1
    delta = deltas[0]
    assert str(delta) in stderr and "instead of a full bundle's" in stderr

    # carried = exactly what the base lacks (plus the bundle's own files and delta.json)
    base_digests = set(_sums(first).values())
    full = _sums(second)
    own = {"kubeplay.json", "install.sh", "config-sample.yaml", "sbom.cdx.json"}
    lacking = {p for p, d in full.items() if d not in base_digests}
    record = read_delta(delta)
    assert record is not None
    patched = {p.path for p in record.patches}
    assert patched == {"files/dl.k8s.io/release/v1.31.2/bin/linux/amd64/kubelet-kp-delta"}
    carried = set(_sums(delta)) - {DELTA_NAME} - {p.patch for p in record.patches}
    assert carried == (lacking | own) - patched
    # the new kube-apiserver shares its base layers with the old one: only its own layers travel
    apiserver = json.loads((second / "kubeplay.json").read_text())["images"]
    assert any(i["name"] == "kube_apiserver" for i in apiserver)
    new_blobs = {p for p in carried if p.startswith("registry/docker/registry/v2/blobs/")}
    base_blobs = {p for p in _sums(first) if p.startswith("registry/docker/registry/v2/blobs/")}
    all_blobs = {p for p in full if p.startswith("registry/docker/registry/v2/blobs/")}
    assert new_blobs and all_blobs - new_blobs == all_blobs & base_blobs  # shared base layers stay behind
    assert not any(p.startswith("kubespray/") for p in carried)
    assert "files/github.com/containernetworking/plugins/releases/download/v1.6.0/cni-kp-delta-amd64.tgz" not in carried

    # base + delta = the full second bundle, digest for digest
    done = tmp_path / "completed"
    _complete(first, delta, done)
    assert _sums(done) == full
    for rel, digest in full.items():
        assert hashlib.sha256((done / rel).read_bytes()).hexdigest() == digest, rel

    # verify (with the signature), pack, verify the archive
    public = (tmp_path / "keys/builder.pub").read_text().split()
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'builder@example namespaces="{NAMESPACE}" {public[0]} {public[1]}\n')
    verified = _kubeplay("verify", str(delta), "--allowed-signers", str(allowed))
    assert verified.returncode == 0, verified.stderr[-2000:]
    packed = _kubeplay("pack", str(delta), "-o", str(tmp_path / "packed"))
    assert packed.returncode == 0, packed.stderr[-2000:]
    delta_archive = next((tmp_path / "packed").glob("*-delta-*.tar.zst"))
    verified = _kubeplay("verify", str(delta_archive))
    assert verified.returncode == 0, verified.stderr[-2000:]

    # --base ARCHIVE (the first bundle packed) gives the same delta
    delta_sums = _sums(delta)
    first_archive = pack_checked_bundle(first, tmp_path / "first-packed").archive
    proc = kubeplay_with_plan(
        _plan(upstream, "1.31.2"),  # type: ignore[arg-type]
        work,
        "build",
        str(spec),
        "-o",
        str(second),
        "--no-wheels",
        "--base",
        str(first_archive),
    )
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    again = read_delta(delta)
    assert again is not None
    rebuilt_own = {"kubeplay.json", "sbom.cdx.json"}  # a rebuild writes them anew (created_at)
    assert {p: e for p, e in again.content.items() if p not in rebuilt_own} == {
        p: e for p, e in record.content.items() if p not in rebuilt_own
    }
    assert again.patches == record.patches
    assert again.base.identities == record.base.identities and again.base.source != record.base.source
    assert without_record(_sums(delta)).keys() == without_record(delta_sums).keys()
    assert {p: d for p, d in _sums(delta).items() if p not in rebuilt_own | {DELTA_NAME}} == {
        p: d for p, d in delta_sums.items() if p not in rebuilt_own | {DELTA_NAME}
    }


def test_a_base_that_is_also_the_output_gives_a_delta_without_patches(
    upstream: UpstreamSimulator, tmp_path: Path
) -> None:
    spec = _publish(upstream, tmp_path)
    bundle = tmp_path / "bundle"
    assert build_with_plan(spec, bundle, _plan(upstream, "1.31.1"), wheels=False).ok
    before = _sums(bundle)
    args = ("build", str(spec), "-o", str(bundle), "--no-wheels", "--base", str(bundle))
    proc = kubeplay_with_plan(_plan(upstream, "1.31.2"), tmp_path, *args)  # type: ignore[arg-type]
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert "also the build's output" in stderr
    (delta,) = tmp_path.glob("bundle-delta-*")
    record = read_delta(delta)
    assert record is not None and record.patches == []
    lacking = {p for p, d in _sums(bundle).items() if d not in set(before.values())}
    own = {"kubeplay.json", "install.sh", "config-sample.yaml", "sbom.cdx.json"}
    assert set(_sums(delta)) - {DELTA_NAME} == lacking | own
