"""Upstream image signatures kept: the simulator publishes cosign-shaped `.sig`/`.att`/`.sbom` tags and an OCI
1.1 referrer (tag-schema index); the build stores them beside the image, byte-exact, the bundle's real
registry serves them by tag, a no-change rebuild keeps them without network, --no-signatures drops them."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from kubeplay.bootstrap.push import Target, push_bundle
from kubeplay.bundle.manifest import SUMS_NAME, read_manifest, read_sha256sums
from kubeplay.bundle.sbom import SBOM_NAME, check_coverage
from kubeplay.fetch.mirrors import Credentials
from kubeplay.lab.upstream import UpstreamSimulator
from kubeplay.store.registry import RegistryStorage

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.build_fixture import (
    build_with_plan,
    bundle_registry,
    image_artifact,
    kubespray_archive,
    make_plan,
    sha256sum_check,
    skopeo,
    write_spec,
)

pytestmark = pytest.mark.integration


def test_signature_artifacts_are_kept_served_and_dropped_on_request(
    upstream: UpstreamSimulator, tmp_path: Path
) -> None:
    signed = upstream.push_image("registry.k8s.io/kp-sig/signed:v1", ["amd64", "arm64"])
    subjects = [signed.digest, signed.manifests["linux/amd64"]]  # the index and one platform manifest are signed
    published = upstream.publish_signatures(signed, subjects)
    upstream.push_image("registry.k8s.io/kp-sig/unsigned:v1", ["amd64", "arm64"])
    archive, sha = kubespray_archive(tmp_path / "src")
    spec = write_spec(tmp_path, upstream, str(archive), sha)
    plan = make_plan(
        [],
        [
            image_artifact("registry.k8s.io/kp-sig/signed:v1", name="signed"),
            image_artifact("registry.k8s.io/kp-sig/unsigned:v1", name="unsigned"),
        ],
    )
    out = tmp_path / "bundle"
    result = build_with_plan(spec, out, plan)
    assert result.ok, result.failures
    records = {r.name: r for r in read_manifest(out).images}
    expected = sorted(f"sha256-{d.removeprefix('sha256:')}{s}" for d in subjects for s in (".sig", ".att", ".sbom", ""))
    assert sorted(published) == expected
    assert records["signed"].signatures == expected
    assert records["unsigned"].signatures == []
    assert sha256sum_check(out).returncode == 0
    sums = read_sha256sums(out / SUMS_NAME)
    sbom = (out / SBOM_NAME).read_text()
    assert check_coverage(out, sbom, sums).exact
    kinds = sorted(c["name"] for c in json.loads(sbom)["components"] if c["type"] == "data")
    assert (
        kinds
        == ["signed att", "signed att", "signed referrers", "signed referrers"]
        + ["signed sbom"] * 2
        + ["signed sig"] * 2
    )

    repository = records["signed"].repository
    index_hex = signed.digest.removeprefix("sha256:")
    with bundle_registry(out, upstream, tmp_path / "serve") as registry:
        for tag in (f"sha256-{index_hex}.sig", f"sha256-{index_hex}"):
            served = skopeo(
                "inspect", "--cert-dir", str(upstream.cert_dir), "--raw", f"docker://{registry}/{repository}:{tag}"
            )
            assert served.returncode == 0, served.stderr
            upstream_raw = skopeo(
                "inspect", "--cert-dir", str(upstream.cert_dir),
                "--creds", f"{upstream.username}:{upstream.password}",
                "--raw", f"docker://{upstream.registry_url.removeprefix('https://')}/registry.k8s.io/kp-sig/signed:{tag}",
            )  # fmt: skip
            assert upstream_raw.returncode == 0, upstream_raw.stderr
            assert (
                hashlib.sha256(served.stdout.encode()).digest() == hashlib.sha256(upstream_raw.stdout.encode()).digest()
            )
        referrers = json.loads(
            skopeo(
                "inspect",
                "--cert-dir",
                str(upstream.cert_dir),
                "--raw",
                f"docker://{registry}/{repository}:sha256-{index_hex}",
            ).stdout
        )
        referrer = referrers["manifests"][0]
        by_digest = skopeo(
            "inspect",
            "--cert-dir",
            str(upstream.cert_dir),
            "--raw",
            f"docker://{registry}/{repository}@{referrer['digest']}",
        )
        assert json.loads(by_digest.stdout)["subject"]["digest"] == signed.digest

    # kubeplay push copies them too: the same tags and bytes in the site registry
    host = upstream.registry_url.removeprefix("https://")
    creds = Credentials(upstream.username, upstream.password)
    target = Target.parse(f"{host}/site")
    push_bundle(out, target, upstream.ca_cert, creds, jobs=2)
    for tag in (f"sha256-{index_hex}.sig", f"sha256-{index_hex}.att", f"sha256-{index_hex}"):
        pushed = skopeo(
            "inspect", "--cert-dir", str(upstream.cert_dir), "--creds", f"{upstream.username}:{upstream.password}",
            "--raw", f"docker://{host}/{target.repository(repository)}:{tag}",
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        digest = "sha256:" + hashlib.sha256(pushed.stdout.encode()).hexdigest()
        assert RegistryStorage(out / "registry").tag_digest(repository, tag) == digest

    # unchanged images keep their artifacts with every mirror unreachable
    dead = {host: {"url": f"https://127.0.0.1:9/{host}", "ca": str(upstream.ca_cert)} for host in upstream.mirrors()}
    again = build_with_plan(write_spec(tmp_path / "again", upstream, str(archive), sha, mirrors=dead), out, plan)
    assert again.ok, again.failures
    assert again.bytes_fetched == 0
    assert {r.name: r.signatures for r in read_manifest(out).images}["signed"] == expected
    storage = RegistryStorage(out / "registry")
    assert storage.tag_digest(repository, f"sha256-{index_hex}.sig") is not None

    dropped = build_with_plan(spec, out, plan, signatures=False)
    assert dropped.ok, dropped.failures
    assert storage.tag_digest(repository, f"sha256-{index_hex}.sig") is None
    assert all(not r.signatures for r in read_manifest(out).images)
    assert sha256sum_check(out).returncode == 0
    assert check_coverage(out, (out / SBOM_NAME).read_text(), read_sha256sums(out / SUMS_NAME)).exact
