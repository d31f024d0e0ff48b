"""`kubeplay build` under faults: resume after a cut, wrong bytes rejected, a killed build completed by a
re-run, a changed kube_version fetching only what differs, credentials never shown anywhere."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from tests import build_fixture as fx

from kubeplay.assemble.pipeline import BuildOptions, BuildResult, run_build
from kubeplay.bundle.manifest import read_manifest
from kubeplay.catalog.model import Plan
from kubeplay.config.bundle import load_bundle_spec
from kubeplay.console import Output
from kubeplay.lab.upstream import UpstreamSimulator

pytestmark = pytest.mark.integration


def build(spec_path: Path, out: Path, plan: Plan) -> BuildResult:
    spec = load_bundle_spec(spec_path)
    return run_build(spec, out, BuildOptions(jobs=4, progress=False, planner=lambda s, t: plan), out=Output(quiet=True))


cli = fx.kubeplay_with_plan


def test_cut_file_and_cut_blob_resume_with_range(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    url = "https://dl.k8s.io/kp-cut/v1/kubelet"
    upstream.add_file(url, data)
    upstream.push_image("registry.k8s.io/kp-cut/img:v1", ["amd64", "arm64"], layer_kib=256)
    archive, sha = fx.kubespray_archive(tmp_path / "src")
    mirrors = fx.mirrors_with(
        upstream,
        dl_k8s_io=f"{upstream.faults_url}/cut/100000/dl.k8s.io",
        registry_k8s_io=upstream.registry_fault_mirror("cut/50000", "registry.k8s.io"),
    )
    spec = fx.write_spec(tmp_path, upstream, str(archive), sha, mirrors=mirrors)
    upstream.reset_faults()
    result = build(
        spec,
        tmp_path / "b",
        fx.make_plan([fx.file_artifact(url, data)], [fx.image_artifact("registry.k8s.io/kp-cut/img:v1")]),
    )
    assert result.ok, result.failures
    assert (tmp_path / "b" / "files/dl.k8s.io/kp-cut/v1/kubelet").read_bytes() == data
    requests = upstream.fault_requests()
    file_ranges = [r["range"] for r in requests if str(r["path"]).endswith("/kp-cut/v1/kubelet")]
    assert "bytes=100000-" in file_ranges
    blob_ranges = [r["range"] for r in requests if "/blobs/" in str(r["path"]) and r["range"]]
    assert any(str(r).startswith("bytes=50000-") for r in blob_ranges)
    assert fx.sha256sum_check(tmp_path / "b").returncode == 0


def test_wrong_bytes_are_rejected_naming_url_and_digests(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    data = b"the real crictl\n" * 500
    url = "https://github.com/kubernetes-sigs/cri-tools/releases/download/v9/kp-crictl.tar.gz"
    upstream.add_file(url, data)
    artifact = fx.file_artifact(url, data, name="crictl", sha512=True)
    archive, sha = fx.kubespray_archive(tmp_path / "src")
    mirrors = fx.mirrors_with(upstream, github_com=f"{upstream.faults_url}/corrupt/github.com")
    spec = fx.write_spec(tmp_path, upstream, str(archive), sha, mirrors=mirrors)
    out = tmp_path / "b"
    result = build(spec, out, fx.make_plan([artifact], []))
    (failure,) = result.failures
    assert failure.url == url and failure.label == "crictl_download_url"
    assert artifact.checksum is not None and artifact.checksum.hex in failure.reason
    assert "sha512 mismatch" in failure.reason and "got " in failure.reason
    assert not (out / artifact.path).exists() and not (out / (artifact.path + ".part")).exists()
    assert not (out / "SHA256SUMS").exists()


def test_404_names_the_item_and_its_variable_and_others_are_kept(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    good = b"present\n"
    upstream.add_file("https://get.helm.sh/kp-404/helm-ok.tar.gz", good)
    archive, sha = fx.kubespray_archive(tmp_path / "src")
    spec = fx.write_spec(tmp_path, upstream, str(archive), sha)
    missing = fx.file_artifact("https://get.helm.sh/kp-404/helm-missing.tar.gz", b"never served", name="helm")
    ok = fx.file_artifact("https://get.helm.sh/kp-404/helm-ok.tar.gz", good, name="helmok")
    proc = cli(fx.make_plan([missing, ok], []), tmp_path, "build", str(spec), "-o", str(tmp_path / "b"))
    _stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert "helm-missing.tar.gz (helm_download_url): HTTP 404" in " ".join(stderr.split())
    assert (tmp_path / "b" / ok.path).read_bytes() == good


def test_killed_build_is_completed_by_a_rerun(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    big = os.urandom(3_000_000)
    url = "https://storage.googleapis.com/kp-kill/v1/big.tar.gz"
    upstream.add_file(url, big)
    upstream.push_image("quay.io/kp-kill/img:v1", ["amd64", "arm64"])
    archive, sha = fx.kubespray_archive(tmp_path / "src")
    slow = fx.mirrors_with(upstream, storage_googleapis_com=f"{upstream.faults_url}/slow/400000/storage.googleapis.com")
    spec_slow = fx.write_spec(tmp_path / "slow", upstream, str(archive), sha, mirrors=slow)
    plan = fx.make_plan([fx.file_artifact(url, big, name="big")], [fx.image_artifact("quay.io/kp-kill/img:v1")])
    out = tmp_path / "b"
    part = out / "files/storage.googleapis.com/kp-kill/v1/big.tar.gz.part"
    proc = cli(plan, tmp_path, "build", str(spec_slow), "-o", str(out))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (part.is_file() and part.stat().st_size > 400_000):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    kept = part.stat().st_size
    assert kept > 400_000 and not (out / "SHA256SUMS").exists()
    # The re-run goes through the fault server's pass-through paths (fail/0), which log every request.
    seen = fx.mirrors_with(
        upstream,
        storage_googleapis_com=f"{upstream.faults_url}/fail/0/storage.googleapis.com",
        quay_io=upstream.registry_fault_mirror("fail/0", "quay.io"),
    )
    spec = fx.write_spec(tmp_path / "fast", upstream, str(archive), sha, mirrors=seen)
    rerun = cli(plan, tmp_path, "--json-events", "build", str(spec), "-o", str(out))
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert (out / "files/storage.googleapis.com/kp-kill/v1/big.tar.gz").read_bytes() == big
    requests = [
        r
        for r in upstream.fault_requests()
        if str(r["path"]).startswith("/fail/0/") or "/fault/fail/0/" in str(r["path"])
    ]
    file_gets = [r for r in requests if str(r["path"]).endswith("/kp-kill/v1/big.tar.gz") and r["method"] == "GET"]
    # one request for the rest: from where the kill left the .part, answered 206 with only the missing bytes
    assert [(r["range"], r["status"], r["sent"]) for r in file_gets] == [(f"bytes={kept}-", 206, len(big) - kept)]
    blob_bytes = sum(int(str(r["sent"])) for r in requests if "/blobs/" in str(r["path"]) and r["method"] == "GET")
    built = next(json.loads(line) for line in stdout.splitlines() if '"built"' in line)
    assert built["fetched"] == len(big) - kept + blob_bytes  # nothing the kill had kept was fetched again
    check = fx.sha256sum_check(out)
    assert check.returncode == 0, check.stdout + check.stderr


def test_changed_kube_version_fetches_only_what_differs(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    v1, v2, shared = os.urandom(200_000), os.urandom(250_000), os.urandom(100_000)
    for name, data in (("v1.31.1/kubeadm", v1), ("v1.32.0/kubeadm", v2), ("shared/etcd", shared)):
        upstream.add_file(f"https://dl.k8s.io/kp-upd/{name}", data)
    a1 = upstream.push_image("registry.k8s.io/kp-upd/apiserver:v1.31.1", ["amd64", "arm64"], base="kp-upd")
    a2 = upstream.push_image("registry.k8s.io/kp-upd/apiserver:v1.32.0", ["amd64", "arm64"], base="kp-upd")
    upstream.push_image("registry.k8s.io/kp-upd/pause:3.10", ["amd64", "arm64"], base="kp-upd")
    archive, sha = fx.kubespray_archive(tmp_path / "src")
    spec = fx.write_spec(tmp_path, upstream, str(archive), sha)
    etcd = fx.file_artifact("https://dl.k8s.io/kp-upd/shared/etcd", shared, name="etcd")
    pause = fx.image_artifact("registry.k8s.io/kp-upd/pause:3.10", name="pause")
    first = fx.make_plan(
        [fx.file_artifact("https://dl.k8s.io/kp-upd/v1.31.1/kubeadm", v1, name="kubeadm"), etcd],
        [fx.image_artifact("registry.k8s.io/kp-upd/apiserver:v1.31.1", name="apiserver"), pause],
    )
    second = fx.make_plan(
        [fx.file_artifact("https://dl.k8s.io/kp-upd/v1.32.0/kubeadm", v2, name="kubeadm"), etcd],
        [fx.image_artifact("registry.k8s.io/kp-upd/apiserver:v1.32.0", name="apiserver"), pause],
        kube_version="1.32.0",
    )
    out = tmp_path / "b"
    assert build(spec, out, first).ok
    result = build(spec, out, second)
    assert result.ok, result.failures
    new_blobs = [d for d in a2.blobs if d not in a1.blobs]  # layers and configs; manifests are not counted
    assert new_blobs and result.bytes_fetched == len(v2) + sum(a2.sizes[d] for d in new_blobs)
    assert result.images_skipped == 1 and result.files_skipped == 1
    assert not (out / "files/dl.k8s.io/kp-upd/v1.31.1/kubeadm").exists()
    tags = out / "registry/docker/registry/v2/repositories/library/registry.k8s.io/kp-upd/apiserver/_manifests/tags"
    assert sorted(p.name for p in tags.iterdir()) == ["v1.32.0"]
    assert read_manifest(out).kube_version == "1.32.0"
    assert fx.sha256sum_check(out).returncode == 0


def test_credentials_never_appear_in_output_manifest_or_state(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    upstream.push_image("ghcr.io/kp-creds/app:v1", ["amd64", "arm64"])
    data = b"file\n"
    upstream.add_file("https://raw.githubusercontent.com/kp-creds/m.yaml", data)
    archive, sha = fx.kubespray_archive(tmp_path / "src")
    spec = fx.write_spec(tmp_path, upstream, str(archive), sha)
    plan = fx.make_plan(
        [fx.file_artifact("https://raw.githubusercontent.com/kp-creds/m.yaml", data)],
        [fx.image_artifact("ghcr.io/kp-creds/app:v1"), fx.image_artifact("ghcr.io/kp-creds/absent:v1", name="absent")],
    )
    out = tmp_path / "b"
    wrong = "Wr0ng-" + upstream.password[::-1]
    seen: list[str] = []
    for env in ({}, {"KUBEPLAY_CRED_SIMULATOR_USERNAME": upstream.username, "KUBEPLAY_CRED_SIMULATOR_PASSWORD": wrong}):
        proc = cli(plan, tmp_path, "--json-events", "build", str(spec), "-o", str(out), env=env)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 1  # the absent image fails the build
        seen += [stdout, stderr]
    assert "ghcr.io/kp-creds/absent:v1" in seen[1] and "not found" in seen[1]
    assert "refused the configured credentials" in seen[3]
    ok_plan = fx.make_plan(plan.files, plan.images[:1])
    proc = cli(ok_plan, tmp_path, "--json-events", "build", str(spec), "-o", str(out))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    seen += [stdout, stderr]
    for path in out.rglob("*"):
        if path.is_file():
            seen.append(path.read_bytes().decode(errors="replace"))
    for text in seen:
        assert upstream.password not in text
        assert wrong not in text


def test_registry_binary_release_is_fetched_per_arch_verified_and_recorded(
    upstream: UpstreamSimulator, tmp_path: Path
) -> None:
    """bundle.yaml `registry_binary`: the release archive for each arch lands under files/, checked against
    its sha256, and kubeplay.json records it for install; a wrong digest fails naming the field."""
    import hashlib

    import yaml

    from kubeplay.bundle.manifest import REGISTRY_BINARY_FILE

    base = "https://github.com/distribution/distribution/releases/download/v2.8.2"
    bodies = {arch: f"registry release for {arch}\n".encode() * 100 for arch in ("amd64", "arm64")}
    for arch, body in bodies.items():
        upstream.add_file(f"{base}/registry_2.8.2_linux_{arch}.tar.gz", body)
    archive, sha = fx.kubespray_archive(tmp_path / "src")
    spec_path = fx.write_spec(tmp_path, upstream, str(archive), sha)
    spec = yaml.safe_load(spec_path.read_text())
    spec["registry_binary"] = {
        "url": f"{base}/registry_2.8.2_linux_{{arch}}.tar.gz",
        "sha256": {arch: hashlib.sha256(body).hexdigest() for arch, body in bodies.items()},
    }
    spec_path.write_text(yaml.safe_dump(spec))
    result = build(spec_path, tmp_path / "b", fx.make_plan([], []))
    assert result.ok, result.failures
    records = [f for f in read_manifest(tmp_path / "b").files if f.name == REGISTRY_BINARY_FILE]
    assert {r.arch: (tmp_path / "b" / r.path).read_bytes() for r in records} == bodies
    assert {r.path for r in records} == {
        f"files/github.com/distribution/distribution/releases/download/v2.8.2/registry_2.8.2_linux_{a}.tar.gz"
        for a in bodies
    }
    assert fx.sha256sum_check(tmp_path / "b").returncode == 0

    spec["registry_binary"]["sha256"]["arm64"] = "0" * 64
    spec_path.write_text(yaml.safe_dump(spec))
    failed = build(spec_path, tmp_path / "c", fx.make_plan([], []))
    (failure,) = failed.failures
    assert failure.label == "registry_binary.url" and failure.url.endswith("_linux_arm64.tar.gz")
    assert "0" * 64 in failure.reason
