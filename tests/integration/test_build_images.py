"""`kubeplay build` images against the simulator: token and basic auth, a multi-arch image cut to two
platforms, shared blobs stored once, the real registry serving the bundle to skopeo, a re-run without I/O."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kubeplay.assemble.pipeline import BuildOptions, run_build
from kubeplay.bundle.manifest import read_manifest
from kubeplay.config.bundle import load_bundle_spec
from kubeplay.console import Output
from kubeplay.lab.upstream import UpstreamSimulator

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.build_fixture import (
    PEAK_RSS_DRIVER,
    bundle_registry,
    file_artifact,
    image_artifact,
    kubespray_archive,
    make_plan,
    plan_json,
    sha256sum_check,
    skopeo,
    write_spec,
)

pytestmark = pytest.mark.integration


def build(spec_path: Path, out: Path, plan: object) -> object:
    spec = load_bundle_spec(spec_path)
    options = BuildOptions(jobs=4, progress=False, planner=lambda s, t: plan)  # type: ignore[arg-type,return-value]
    return run_build(spec, out, options, out=Output(quiet=True))


def test_token_auth_multiarch_cut_and_registry_serves_the_bundle(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    wide = upstream.push_image(
        "registry.k8s.io/kp-build/wide:v1", ["amd64", "arm64", "ppc64le", "s390x"], variant_arm64=True
    )
    narrow = upstream.push_image("quay.io/kp-build/narrow:v2", ["amd64", "arm64"], index_format="docker")
    single = upstream.push_image("docker.io/library/kp-build-single:1.0", ["amd64"])
    assert single.digest
    kubeadm = b"kubeadm for the build test\n" * 1000
    url = "https://dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm-kp-build"
    upstream.add_file(url, kubeadm)
    archive, sha = kubespray_archive(tmp_path / "src")
    spec = write_spec(tmp_path, upstream, str(archive), sha, platform_policy="warn")
    plan = make_plan(
        [file_artifact(url, kubeadm, name="kubeadm")],
        [
            image_artifact("registry.k8s.io/kp-build/wide:v1", name="wide"),
            image_artifact("quay.io/kp-build/narrow:v2", name="narrow"),
            image_artifact("docker.io/library/kp-build-single:1.0", name="single"),
        ],
    )
    out = tmp_path / "bundle"
    result = build(spec, out, plan)
    assert result.ok, result.failures  # type: ignore[attr-defined]
    check = sha256sum_check(out)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (out / "files/dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm-kp-build").read_bytes() == kubeadm
    assert (out / "kubespray/galaxy.yml").is_file() and (
        out / "kubespray/docs/readme-link.md"
    ).read_text() == "kubespray\n"

    manifest = read_manifest(out)
    records = {r.name: r for r in manifest.images}
    wide_rec = records["wide"]
    assert wide_rec.upstream_digest == wide.digest
    # two of four platforms bundled: the tag serves upstream's index unchanged, the cut one is kept by digest
    assert wide_rec.digest == wide.digest and wide_rec.cut_index not in (None, wide.digest)
    assert {p.platform for p in wide_rec.platforms} == {"linux/amd64", "linux/arm64/v8"}
    assert {p.digest for p in wide_rec.platforms} == {wide.manifests["linux/amd64"], wide.manifests["linux/arm64/v8"]}
    assert wide_rec.cut_index is not None
    index = json.loads(
        (
            out / "registry/docker/registry/v2/blobs/sha256" / wide_rec.cut_index[7:9] / wide_rec.cut_index[7:] / "data"
        ).read_bytes()
    )
    assert [m["digest"] for m in index["manifests"]] == [p.digest for p in wide_rec.platforms]
    assert records["narrow"].digest == narrow.digest and records["narrow"].cut_index is None  # nothing to cut
    assert records["single"].missing_arches == ["arm64"]  # platform_policy: warn

    with bundle_registry(out, upstream, tmp_path / "serve") as registry:
        for record in manifest.images:
            ref = f"docker://{registry}/{record.repository}:{record.tag}"
            inspect = skopeo("inspect", "--cert-dir", str(upstream.cert_dir), "--raw", ref)
            assert inspect.returncode == 0, inspect.stderr
            assert "sha256:" + hashlib.sha256(inspect.stdout.encode()).hexdigest() == record.digest
            for platform in record.platforms:
                (tmp_path / "copies" / record.name).mkdir(parents=True, exist_ok=True)
                copied = skopeo(
                    "copy",
                    "--src-cert-dir",
                    str(upstream.cert_dir),
                    "--override-arch",
                    platform.arch,
                    *(["--override-variant", "v8"] if platform.platform.endswith("/v8") else []),
                    ref,
                    f"dir:{tmp_path / 'copies' / record.name / platform.arch}",
                )
                assert copied.returncode == 0, copied.stderr
                got = (tmp_path / "copies" / record.name / platform.arch / "manifest.json").read_bytes()
                assert "sha256:" + hashlib.sha256(got).hexdigest() == platform.digest

    # A second build with the same plan needs no network at all: point every mirror at a closed port.
    dead = {host: {"url": f"https://127.0.0.1:9/{host}", "ca": str(upstream.ca_cert)} for host in upstream.mirrors()}
    spec_dead = write_spec(tmp_path / "again", upstream, str(archive), sha, mirrors=dead, platform_policy="warn")
    again = build(spec_dead, out, plan)
    assert again.ok, again.failures  # type: ignore[attr-defined]
    assert again.bytes_fetched == 0 and again.images_skipped == 3  # type: ignore[attr-defined]
    assert sha256sum_check(out).returncode == 0


def test_shared_blobs_are_stored_once(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    refs = [f"registry.k8s.io/kp-dedup/img{i}:v1" for i in range(3)]
    infos = [upstream.push_image(r, ["amd64", "arm64"], base="kp-dedup-base", layer_kib=128) for r in refs]
    archive, sha = kubespray_archive(tmp_path / "src")
    spec = write_spec(tmp_path, upstream, str(archive), sha)
    out = tmp_path / "bundle"
    result = build(spec, out, make_plan([], [image_artifact(r, name=f"img{i}") for i, r in enumerate(refs)]))
    assert result.ok, result.failures  # type: ignore[attr-defined]
    unique: dict[str, int] = {}
    for info in infos:
        unique.update(info.sizes)
    manifest = read_manifest(out)
    blob_files = list((out / "registry/docker/registry/v2/blobs").glob("sha256/*/*/data"))
    stored = {"sha256:" + p.parent.name: p.stat().st_size for p in blob_files}
    # every layer and config once; manifests once; the indexes kubeplay kept are the upstream ones
    assert set(stored) == set(unique)
    assert manifest.totals.blobs_size == sum(unique.values())


def test_basic_auth_registry(make_upstream: Callable[..., UpstreamSimulator], tmp_path: Path) -> None:
    sim = make_upstream(registry_auth="basic")
    info = sim.push_image("ghcr.io/kp-basic/app:v3", ["amd64", "arm64"])
    archive, sha = kubespray_archive(tmp_path / "src")
    spec = write_spec(tmp_path, sim, str(archive), sha)
    out = tmp_path / "bundle"
    result = build(spec, out, make_plan([], [image_artifact("ghcr.io/kp-basic/app:v3", name="app")]))
    assert result.ok, result.failures  # type: ignore[attr-defined]
    assert read_manifest(out).images[0].digest == info.digest


def test_strict_platform_policy_fails_the_image_and_names_it(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    upstream.push_image("quay.io/kp-strict/amd64only:v1", ["amd64"], as_index=True)
    archive, sha = kubespray_archive(tmp_path / "src")
    spec = write_spec(tmp_path, upstream, str(archive), sha, platform_policy="strict")
    result = build(
        spec, tmp_path / "bundle", make_plan([], [image_artifact("quay.io/kp-strict/amd64only:v1", name="x")])
    )
    (failure,) = result.failures  # type: ignore[attr-defined]
    assert failure.label == "x_image_repo" and "arm64" in failure.reason and "strict" in failure.reason
    assert not (tmp_path / "bundle" / "SHA256SUMS").exists()


@pytest.mark.slow
def test_a_large_layer_streams_to_disk(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    layer_mib = 160
    info = upstream.push_image("quay.io/kp-big/fat:v1", ["amd64"], base="", layer_kib=layer_mib * 1024)
    archive, sha = kubespray_archive(tmp_path / "src")
    spec = write_spec(tmp_path, upstream, str(archive), sha, platform_policy="warn")
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan_json(make_plan([], [image_artifact("quay.io/kp-big/fat:v1", name="fat")])))
    argv = [
        sys.executable,
        "-c",
        PEAK_RSS_DRIVER,
        str(plan_file),
        "--quiet",
        "build",
        str(spec),
        "-o",
        str(tmp_path / "b"),
    ]
    peak_file = tmp_path / "peak-kib"
    env = {**os.environ, "KUBEPLAY_PEAK_RSS_FILE": str(peak_file)}
    run = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert run.returncode == 0, run.stderr
    biggest = max(info.sizes.values())
    assert biggest > layer_mib << 20
    # peak memory stays far below the layer size: the blob went to disk in chunks
    assert int(peak_file.read_text()) * 1024 < biggest * 0.75
    assert sha256sum_check(tmp_path / "b").returncode == 0
