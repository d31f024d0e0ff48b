"""bundle.yaml `images:` and `files:` built against the simulator: the same fetch/store path as kubespray's
artifacts (mirrors, credentials, registry layout, pruning), and bad input named by its bundle.yaml location."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeplay.bundle.manifest import read_manifest
from kubeplay.lab.upstream import UpstreamSimulator

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.build_fixture import (
    build_with_plan,
    bundle_registry,
    file_artifact,
    kubeplay_with_plan,
    kubespray_archive,
    make_plan,
    sha256sum_check,
    skopeo,
    write_spec,
)

pytestmark = pytest.mark.integration


def spec_with(path: Path, **extra: Any) -> Path:
    data = yaml.safe_load(path.read_text())
    data.update(extra)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_extra_images_and_files_land_beside_kubesprays_and_are_served(
    upstream: UpstreamSimulator, tmp_path: Path
) -> None:
    wide = upstream.push_image("ghcr.io/kp-user/app:1.2.0", ["amd64", "arm64", "ppc64le"], variant_arm64=True)
    agent = upstream.push_image("quay.io/kp-user/agent:3", ["amd64", "arm64"])
    tool = b"the workload's own tool\n" * 500
    tool_url = "https://downloads.example.org/tools/tool-1.0.tar.gz"
    tool_sha = upstream.add_file(tool_url, tool)
    kubeadm = b"kubeadm\n" * 100
    kubeadm_url = "https://dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm-kp-user"
    upstream.add_file(kubeadm_url, kubeadm)
    archive, sha = kubespray_archive(tmp_path / "src")
    spec = spec_with(
        write_spec(tmp_path, upstream, str(archive), sha),  # mirrors and the credentials file of the simulator
        images=[
            "ghcr.io/kp-user/app:1.2.0",
            {"ref": f"quay.io/kp-user/agent@{agent.digest}", "arches": ["arm64"]},
        ],
        files=[{"url": tool_url, "sha256": tool_sha}],
    )
    out = tmp_path / "bundle"
    result = build_with_plan(
        spec, out, make_plan([file_artifact(kubeadm_url, kubeadm, name="kubeadm")], []), wheels=False
    )
    assert result.ok, result.failures
    assert sha256sum_check(out).returncode == 0
    assert (out / "files/downloads.example.org/tools/tool-1.0.tar.gz").read_bytes() == tool
    assert (out / "files/dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm-kp-user").read_bytes() == kubeadm

    manifest = read_manifest(out)
    records = {r.variable: r for r in manifest.images}
    app = records["bundle.yaml images[0]"]
    assert app.repository == "library/ghcr.io/kp-user/app" and app.tag == "1.2.0"
    assert {p.platform for p in app.platforms} == {"linux/amd64", "linux/arm64/v8"}  # ppc64le cut away
    assert app.upstream_digest == wide.digest == app.digest and app.cut_index not in (None, wide.digest)
    agent_record = records["bundle.yaml images[1]"]
    assert [p.platform for p in agent_record.platforms] == ["linux/arm64"]  # its own arches
    assert {f.variable: f.sha256 for f in manifest.files}["bundle.yaml files[0]"] == tool_sha

    with bundle_registry(out, upstream, tmp_path / "serve") as registry:
        ref = f"docker://{registry}/library/ghcr.io/kp-user/app:1.2.0"
        raw = skopeo("inspect", "--cert-dir", str(upstream.cert_dir), "--raw", ref)
        assert raw.returncode == 0, raw.stderr
        assert "sha256:" + hashlib.sha256(raw.stdout.encode()).hexdigest() == app.digest
        (tmp_path / "copy").mkdir()
        for arch in ("amd64", "arm64"):
            copied = skopeo(
                "copy",
                "--src-cert-dir",
                str(upstream.cert_dir),
                "--override-arch",
                arch,
                *(["--override-variant", "v8"] if arch == "arm64" else []),
                ref,
                f"dir:{tmp_path / 'copy' / arch}",
            )
            assert copied.returncode == 0, copied.stderr
            got = hashlib.sha256((tmp_path / "copy" / arch / "manifest.json").read_bytes()).hexdigest()
            assert f"sha256:{got}" in {p.digest for p in app.platforms}
        ppc = skopeo("inspect", "--cert-dir", str(upstream.cert_dir), "--override-arch", "ppc64le", ref)
        assert ppc.returncode != 0  # not in the bundle
        pinned = skopeo(
            "inspect",
            "--cert-dir",
            str(upstream.cert_dir),
            "--raw",
            f"docker://{registry}/library/quay.io/kp-user/agent@{agent_record.digest}",
        )
        assert pinned.returncode == 0, pinned.stderr

    # Dropping them from bundle.yaml prunes them like anything else the plan no longer lists.
    data = yaml.safe_load(spec.read_text())
    data["images"], data["files"] = ["ghcr.io/kp-user/app:1.2.0"], []
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    again = build_with_plan(
        spec, out, make_plan([file_artifact(kubeadm_url, kubeadm, name="kubeadm")], []), wheels=False
    )
    assert again.ok, again.failures
    assert again.bytes_fetched == 0 and again.images_skipped == 1
    assert not (out / "files/downloads.example.org").exists()
    assert [r.variable for r in read_manifest(out).images] == ["bundle.yaml images[0]"]
    blobs = {p.parent.name for p in (out / "registry/docker/registry/v2/blobs").glob("sha256/*/*/data")}
    assert not set(agent.blobs) - set(wide.blobs) & {d.removeprefix("sha256:") for d in blobs}
    assert sha256sum_check(out).returncode == 0


def test_bad_sha256_and_missing_arch_are_named_exit_2_and_the_rest_is_kept(
    upstream: UpstreamSimulator, tmp_path: Path
) -> None:
    upstream.push_image("quay.io/kp-user/amd64-only:1", ["amd64"])
    upstream.push_image("quay.io/kp-user/fine:1", ["amd64", "arm64"])
    good_url = "https://downloads.example.org/kp-user/good.bin"
    bad_url = "https://downloads.example.org/kp-user/changed.bin"
    good_sha = upstream.add_file(good_url, b"good\n" * 100)
    upstream.add_file(bad_url, b"what upstream serves now\n")
    kubeadm = b"kubeadm\n" * 100
    kubeadm_url = "https://dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm-kp-bad"
    upstream.add_file(kubeadm_url, kubeadm)
    archive, sha = kubespray_archive(tmp_path / "src")
    spec_with(
        write_spec(tmp_path, upstream, str(archive), sha),
        images=["quay.io/kp-user/fine:1", "quay.io/kp-user/amd64-only:1"],
        files=[{"url": good_url, "sha256": good_sha}, {"url": bad_url, "sha256": "12" * 32}],
    )
    out = tmp_path / "bundle"
    plan = make_plan([file_artifact(kubeadm_url, kubeadm, name="kubeadm")], [])
    proc = kubeplay_with_plan(plan, tmp_path, "build", str(tmp_path / "bundle.yaml"), "-o", str(out), "--no-wheels")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert f"{bad_url} (bundle.yaml files[1]): sha256 mismatch: expected {'12' * 32}" in err
    assert "(bundle.yaml images[1])" in err and "has no arm64 image" in err
    assert "bundle.yaml images[1].platform_policy: strict" in err
    assert "(bundle.yaml files[0])" not in err and "(bundle.yaml images[0])" not in err
    # everything else was fetched and is kept; the bundle is not complete (no SHA256SUMS)
    assert (out / "files/downloads.example.org/kp-user/good.bin").is_file()
    assert (out / "files/dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm-kp-bad").read_bytes() == kubeadm
    assert (out / "registry/docker/registry/v2/repositories/library/quay.io/kp-user/fine/_manifests/tags/1").is_dir()
    assert not (out / "SHA256SUMS").exists()
    assert not (out / "files/downloads.example.org/kp-user/changed.bin").exists()

    # A network failure of the same artifacts is not bundle.yaml's fault: exit 1.
    dead = {
        **upstream.mirrors(),
        "downloads.example.org": {"url": "https://127.0.0.1:9/x", "ca": str(upstream.ca_cert)},
    }
    spec_with(tmp_path / "bundle.yaml", mirrors=dead, images=[], files=[{"url": good_url, "sha256": "34" * 32}])
    proc = kubeplay_with_plan(
        plan, tmp_path, "build", str(tmp_path / "bundle.yaml"), "-o", str(out), "--no-wheels", "--retries", "1"
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "(bundle.yaml files[0])" in err
