"""bundle.yaml `charts:` against the simulator: a chart from a classic HTTP repository (its index.yaml on
nginx) with a dependency it does not carry, and an OCI chart pushed to the registry. The bundle serves them
as OCI artifacts and as a chart repository with matching digests, and bundles the images they use."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kubeplay.bundle.manifest import read_manifest, read_sha256sums
from kubeplay.bundle.sbom import SBOM_NAME, check_coverage
from kubeplay.catalog.examples import example_tree_path
from kubeplay.catalog.source import file_sha256
from kubeplay.lab.upstream import UpstreamSimulator
from kubeplay.lab.upstream.charts import build_chart

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.build_fixture import bundle_registry, kubeplay_with_plan, kubespray_archive, make_plan, write_spec
from tests.conftest import run_kubeplay

pytestmark = pytest.mark.integration

REPO = "https://charts.example.org/stable"
OCI = "oci://ghcr.io/kp-charts/charts"
APP_VERSION_TEMPLATE = {"deployment.yaml": 'image: "{{ .Values.image.repository }}:{{ .Chart.AppVersion }}"\n'}


def charts_on(sim: UpstreamSimulator) -> dict[str, bytes]:
    """web 1.2.0 (HTTP repo, depends on redis 0.5.0 from the same repo, not vendored) and ociapp 3.1.0 (OCI)."""
    for ref in (
        "registry.k8s.io/kp-charts/controller:v1.11.0",
        "docker.io/kp-charts/redis:7.2.4",
        "quay.io/kp-charts/sidecar:2.0",
        "ghcr.io/kp-charts/oci-app:3.1",
    ):
        sim.push_image(ref, ["amd64", "arm64"])
    web = build_chart(
        "web",
        "1.2.0",
        app_version="1.11.0",
        values={
            "controller": {"image": {"registry": "registry.k8s.io", "image": "kp-charts/controller", "tag": "v1.11.0"}},
            "metrics": {"image": {"repository": "quay.io/kp-charts/metrics"}},  # no tag: unresolved
            "debug": {"image": "busybox:1.36"},  # excluded in bundle.yaml
        },
        dependencies=[{"name": "redis", "version": "0.5.0", "repository": REPO}],
        annotations={"helm.sh/images": "- name: sidecar\n  image: quay.io/kp-charts/sidecar:2.0\n"},
    )
    redis = build_chart(
        "redis", "0.5.0", values={"image": {"registry": "docker.io", "repository": "kp-charts/redis", "tag": "7.2.4"}}
    )
    ociapp = build_chart(
        "ociapp",
        "3.1.0",
        app_version="3.1",
        values={"image": {"repository": "ghcr.io/kp-charts/oci-app"}},
        templates=APP_VERSION_TEMPLATE,
    )
    sim.add_chart_repo(REPO, [web, redis])
    sim.push_chart(OCI, ociapp)
    return {"web": web, "redis": redis, "ociapp": ociapp}


def spec_with(tmp_path: Path, sim: UpstreamSimulator, charts: list[dict[str, Any]]) -> Path:
    archive, sha = kubespray_archive(tmp_path / "src")
    path = write_spec(tmp_path, sim, str(archive), sha)
    data = yaml.safe_load(path.read_text())
    data["charts"] = charts
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_build(tmp_path: Path, spec: Path, out: Path) -> tuple[int, str]:
    proc = kubeplay_with_plan(make_plan([], []), tmp_path, "build", str(spec), "-o", str(out), "--no-wheels")
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def test_charts_served_as_oci_artifacts_and_a_chart_repository(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    packages = charts_on(upstream)
    oci_digest = upstream.push_chart(OCI, packages["ociapp"])
    spec = spec_with(
        tmp_path,
        upstream,
        [
            {"name": "web", "repo": REPO, "version": "1.2.0", "exclude_images": ["docker.io/library/busybox"]},
            {"name": "ociapp", "repo": OCI, "version": "3.1.0"},
        ],
    )
    out = tmp_path / "bundle"
    code, err = run_build(tmp_path, spec, out)
    assert code == 0, err
    assert "bundle.yaml charts[0]: web Chart.yaml" not in err
    assert "values.yaml metrics.image: quay.io/kp-charts/metrics: no tag and no digest" in err  # listed for the user

    # the chart repository: index.yaml lists every package with the digest of the file served beside it
    index = yaml.safe_load((out / "files/charts/index.yaml").read_text())
    assert sorted(index["entries"]) == ["ociapp", "redis", "web"]
    for name, package in packages.items():
        (entry,) = index["entries"][name]
        assert entry["digest"] == hashlib.sha256(package).hexdigest()
        assert (out / "files/charts" / entry["urls"][0]).read_bytes() == package

    verified = run_kubeplay("verify", str(out), timeout=300)
    assert verified.returncode == 0, verified.stderr
    sbom = (out / SBOM_NAME).read_text()
    assert check_coverage(out, sbom, read_sha256sums(out / "SHA256SUMS")).exact  # packages and artifacts too
    components = {c["bom-ref"]: c for c in json.loads(sbom)["components"]}
    assert components["chart:files/charts/web-1.2.0.tgz"]["version"] == "1.2.0"

    # kubeplay.json lists each chart with where it came from and both ways it is served
    charts = {c.name: c for c in read_manifest(out).charts}
    assert sorted(charts) == ["ociapp", "redis", "web"]
    assert charts["redis"].location == "bundle.yaml charts[0] dependency redis"
    assert charts["web"].source == f"{REPO}/web-1.2.0.tgz"
    assert charts["ociapp"].source == "oci://ghcr.io/kp-charts/charts/ociapp:3.1.0"
    assert charts["ociapp"].digest == oci_digest and charts["ociapp"].repository == "library/charts/ociapp"
    assert all(c.sha256 == hashlib.sha256(packages[c.name]).hexdigest() for c in charts.values())

    # the images they use, found in values.yaml, the annotation, the dependency, and appVersion
    records = {r.upstream: r for r in read_manifest(out).images}
    assert set(records) == {
        "registry.k8s.io/kp-charts/controller:v1.11.0",
        "quay.io/kp-charts/sidecar:2.0",
        "docker.io/kp-charts/redis:7.2.4",
        "ghcr.io/kp-charts/oci-app:3.1",
    }
    assert records["docker.io/kp-charts/redis:7.2.4"].variable == (
        "bundle.yaml charts[0] redis values.yaml image"
    )  # found in the dependency fetched from the repository

    with (
        bundle_registry(out, upstream, tmp_path / "serve") as registry,
        httpx.Client(verify=upstream.ssl_context(), timeout=20) as client,
    ):
        for name, package in packages.items():
            manifest = client.get(
                f"https://{registry}/v2/library/charts/{name}/manifests/{index['entries'][name][0]['version']}",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            )
            assert manifest.status_code == 200, (name, manifest.text)
            layer = json.loads(manifest.content)["layers"][0]
            assert layer["mediaType"] == "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
            assert layer["digest"] == f"sha256:{hashlib.sha256(package).hexdigest()}"  # same as index.yaml's
            blob = client.get(f"https://{registry}/v2/library/charts/{name}/blobs/{layer['digest']}")
            assert blob.content == package
            if name == "ociapp":  # upstream's artifact, byte-exact
                assert f"sha256:{hashlib.sha256(manifest.content).hexdigest()}" == oci_digest
        image = client.get(
            f"https://{registry}/v2/library/ghcr.io/kp-charts/oci-app/manifests/3.1",
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        )
        assert image.status_code == 200

    # dropping a chart prunes its packages, artifact and images
    data = yaml.safe_load(spec.read_text())
    data["charts"] = data["charts"][1:]
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    code, err = run_build(tmp_path, spec, out)
    assert code == 0, err
    assert sorted(yaml.safe_load((out / "files/charts/index.yaml").read_text())["entries"]) == ["ociapp"]
    assert not (out / "files/charts/web-1.2.0.tgz").exists()
    assert not (out / "registry/docker/registry/v2/repositories/library/charts/web").exists()
    assert [c.name for c in read_manifest(out).charts] == ["ociapp"]
    assert [r.upstream for r in read_manifest(out).images] == ["ghcr.io/kp-charts/oci-app:3.1"]


def test_missing_version_and_wrong_index_digest_are_named_exit_2(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    packages = charts_on(upstream)
    other = build_chart("tampered", "1.0.0", values={"image": "quay.io/kp-charts/sidecar:2.0"})
    upstream.add_chart_repo("https://charts.example.org/broken", [other])
    index = yaml.safe_load(upstream.files_root.joinpath("charts.example.org/broken/index.yaml").read_text())
    index["entries"]["tampered"][0]["digest"] = "ab" * 32
    upstream.add_file("https://charts.example.org/broken/index.yaml", yaml.safe_dump(index).encode())
    spec = spec_with(
        tmp_path,
        upstream,
        [
            {"name": "web", "repo": REPO, "version": "9.9.9"},
            {"name": "tampered", "repo": "https://charts.example.org/broken", "version": "1.0.0"},
            {"name": "ociapp", "repo": OCI, "version": "3.1.0"},
        ],
    )
    out = tmp_path / "bundle"
    code, err = run_build(tmp_path, spec, out)
    assert code == 2, err
    assert "(bundle.yaml charts[0]): chart web has no version 9.9.9 in https://charts.example.org/stable" in err
    assert "(bundle.yaml charts[1]): " in err and f"index.yaml says sha256:{'ab' * 32}" in err
    # the rest was fetched and is kept
    assert (out / "registry/docker/registry/v2/repositories/library/ghcr.io/kp-charts/oci-app").is_dir()
    assert (out / "files/charts/ociapp-3.1.0.tgz").read_bytes() == packages["ociapp"]
    assert not (out / "SHA256SUMS").exists()


def test_plan_lists_chart_images_with_their_source(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    packages = charts_on(upstream)
    tree = tmp_path / "src" / "kubespray-2.31.0"
    shutil.copytree(example_tree_path(), tree)
    archive = tmp_path / "kubespray-v2.31.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    spec = {
        "kubespray": {"version": "v2.31.0-example", "source": str(archive), "sha256": file_sha256(archive)},
        "arches": ["amd64", "arm64"],
        "mirrors": upstream.mirrors(),
        "credentials_file": str(upstream.credentials_file(tmp_path / "credentials.yaml")),
        "charts": [{"name": "web", "repo": REPO, "version": "1.2.0", "images": ["quay.io/kp-charts/extra:1"]}],
    }
    path = tmp_path / "bundle.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {"KUBEPLAY_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "250"}
    run = run_kubeplay("plan", str(path), timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()

    def line_of(text: str) -> list[str]:
        return next(line for line in lines if text in line).split()

    assert line_of("registry.k8s.io/kp-charts/controller:v1.11.0")[:5] == [
        "chart", "image", "charts[0]", "web", "values.yaml"
    ]  # fmt: skip
    assert "Chart.yaml" in line_of("quay.io/kp-charts/sidecar:2.0")  # from the helm.sh/images annotation
    assert "redis" in line_of("docker.io/kp-charts/redis:7.2.4")  # from the dependency
    assert "charts[0].images" in line_of("quay.io/kp-charts/extra:1")
    assert any("busybox:1.36" in line for line in lines)  # not excluded in this bundle.yaml
    assert line_of("chart  web 1.2.0")[3] == f"{REPO}/web-1.2.0.tgz"
    assert line_of("chart  redis 0.5.0")[-1] == "redis)"  # (bundle.yaml charts[0] dependency redis)
    assert any("metrics.image: quay.io/kp-charts/metrics: no tag" in line for line in lines)
    assert "registry.k8s.io/kube-apiserver:v1.35.2" in run.stderr  # kubespray's plan is still all there

    sized = run_kubeplay("plan", str(path), "--sizes", "--json", timeout=300, env=env)
    assert sized.returncode == 0, sized.stderr
    body = json.loads(sized.stdout)
    by_path = body["sizes"]["by_path"]
    assert by_path["files/charts/web-1.2.0.tgz"] == len(packages["web"])
    assert by_path["files/charts/redis-0.5.0.tgz"] == len(packages["redis"])
    assert body["sizes"]["by_image"]["registry.k8s.io/kp-charts/controller:v1.11.0"] > 0
    assert [c["name"] for c in body["charts"]] == ["web", "redis"]
    assert body["unresolved_images"][0]["where"] == "values.yaml metrics.image"


def test_dependency_version_ranges_take_the_newest_match(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    upstream.push_image("docker.io/kp-charts/cache:1.3", ["amd64", "arm64"])
    caches = [
        build_chart("cache", v, values={"image": f"docker.io/kp-charts/cache:{tag}"})
        for v, tag in (("0.5.0", "1.0"), ("0.5.3", "1.3"), ("0.6.0", "2.0"))
    ]
    app = build_chart(
        "app", "1.0.0", dependencies=[{"name": "cache", "version": "~0.5.0", "repository": f"{REPO}-ranges"}]
    )
    stuck = build_chart(
        "stuck", "1.0.0", dependencies=[{"name": "cache", "version": "^3.0.0", "repository": f"{REPO}-ranges"}]
    )
    upstream.add_chart_repo(f"{REPO}-ranges", [*caches, app, stuck])
    spec = spec_with(tmp_path, upstream, [{"name": "app", "repo": f"{REPO}-ranges", "version": "1.0.0"}])
    out = tmp_path / "bundle"
    code, err = run_build(tmp_path, spec, out)
    assert code == 0, err
    assert {(c.name, c.version) for c in read_manifest(out).charts} == {("app", "1.0.0"), ("cache", "0.5.3")}
    assert [r.upstream for r in read_manifest(out).images] == ["docker.io/kp-charts/cache:1.3"]

    spec_with(tmp_path, upstream, [{"name": "stuck", "repo": f"{REPO}-ranges", "version": "1.0.0"}])
    code, err = run_build(tmp_path, tmp_path / "bundle.yaml", tmp_path / "bundle2")
    assert code == 2, err
    assert "(bundle.yaml charts[0] dependency cache): no version of chart cache in" in err
    assert "satisfies '^3.0.0'" in err
