"""Upstream image signatures kept: the simulator publishes cosign-shaped `.sig`/`.att`/`.sbom` tags and an OCI
1.1 referrer (tag-schema index); the build stores them beside the image, byte-exact, the bundle's real
registry serves them by tag, a no-change rebuild keeps them without network, --no-signatures drops them."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import httpx
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


MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def test_cosign_lookup_by_tag_finds_upstream_signature_of_an_index_cut_to_the_bundled_platforms(
    upstream: UpstreamSimulator, tmp_path: Path
) -> None:
    """Upstream signs its 4-platform index; the bundle carries 2 platforms. Through the bundle's real
    registry: the tag resolves to upstream's digest and `sha256-<it>.sig` is there with a payload naming it
    (what `cosign verify IMAGE:TAG` checks); a containerd-style pull by tag (index -> the node's platform
    manifest -> config and layers) works for each bundled platform; a platform not bundled is absent."""
    wide = upstream.push_image("registry.k8s.io/kp-sig/wide:v1", ["amd64", "arm64", "ppc64le", "s390x"])
    upstream.publish_signatures(wide)  # the index only, as Kubernetes signs its release images
    archive, sha = kubespray_archive(tmp_path / "src")
    spec = write_spec(tmp_path, upstream, str(archive), sha)
    plan = make_plan([], [image_artifact("registry.k8s.io/kp-sig/wide:v1", name="wide")])
    out = tmp_path / "bundle"
    result = build_with_plan(spec, out, plan)
    assert result.ok, result.failures
    record = read_manifest(out).images[0]
    assert record.digest == record.upstream_digest == wide.digest
    assert record.cut_index is not None and record.cut_index != wide.digest
    assert {p.arch for p in record.platforms} == {"amd64", "arm64"}
    index_hex = wide.digest.removeprefix("sha256:")
    assert f"sha256-{index_hex}.sig" in record.signatures
    assert sha256sum_check(out).returncode == 0
    assert check_coverage(out, (out / SBOM_NAME).read_text(), read_sha256sums(out / SUMS_NAME)).exact

    def digest_of(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    with (
        bundle_registry(out, upstream, tmp_path / "serve") as registry,
        httpx.Client(base_url=f"https://{registry}/v2/{record.repository}", verify=upstream.ssl_context()) as http,
    ):
        # cosign: resolve the tag to a digest, then the `.sig` tag of that digest, whose payload names it
        head = http.head("/manifests/v1", headers={"Accept": MANIFEST_ACCEPT})
        assert head.status_code == 200 and head.headers["docker-content-digest"] == wide.digest
        sig = http.get(f"/manifests/sha256-{index_hex}.sig", headers={"Accept": MANIFEST_ACCEPT})
        assert sig.status_code == 200, sig.text
        layer = sig.json()["layers"][0]
        assert layer["annotations"]["dev.cosignproject.cosign/signature"]
        payload = http.get(f"/blobs/{layer['digest']}")
        assert payload.status_code == 200 and digest_of(payload.content) == layer["digest"]
        assert json.loads(payload.content)["critical"]["image"]["docker-manifest-digest"] == wide.digest
        referrers = http.get(f"/manifests/sha256-{index_hex}", headers={"Accept": MANIFEST_ACCEPT})
        referrer = http.get(
            f"/manifests/{referrers.json()['manifests'][0]['digest']}", headers={"Accept": MANIFEST_ACCEPT}
        )
        assert referrer.json()["subject"]["digest"] == wide.digest

        # containerd pulling by tag: the index, the descriptor of its platform, that manifest, its blobs
        index = http.get("/manifests/v1", headers={"Accept": MANIFEST_ACCEPT})
        assert index.status_code == 200 and digest_of(index.content) == wide.digest
        by_platform = {d["platform"]["architecture"]: d for d in index.json()["manifests"]}
        assert set(by_platform) == {"amd64", "arm64", "ppc64le", "s390x"}  # upstream's, unchanged
        for platform in record.platforms:
            descriptor = by_platform[platform.arch]
            child = http.get(f"/manifests/{descriptor['digest']}", headers={"Accept": descriptor["mediaType"]})
            assert child.status_code == 200 and digest_of(child.content) == descriptor["digest"] == platform.digest
            document = child.json()
            for blob in [document["config"], *document["layers"]]:
                got = http.get(f"/blobs/{blob['digest']}")
                assert got.status_code == 200 and digest_of(got.content) == blob["digest"]
                assert len(got.content) == blob["size"]
        absent = http.get(f"/manifests/{by_platform['ppc64le']['digest']}", headers={"Accept": MANIFEST_ACCEPT})
        assert absent.status_code == 404  # not bundled: a ppc64le node is told the manifest is unknown
        cut = http.get(f"/manifests/{record.cut_index}", headers={"Accept": MANIFEST_ACCEPT})
        assert cut.status_code == 200 and [m["digest"] for m in cut.json()["manifests"]] == [
            p.digest for p in record.platforms
        ]

        # a real client choosing its platform from the served index (containers/image, as skopeo)
        (tmp_path / "pulled").mkdir()
        for platform in record.platforms:
            copied = skopeo(
                "copy", "--src-cert-dir", str(upstream.cert_dir), "--override-arch", platform.arch,
                f"docker://{registry}/{record.repository}:v1", f"oci:{tmp_path / 'pulled' / platform.arch}:v1",
            )  # fmt: skip
            assert copied.returncode == 0, copied.stderr
            oci_index = json.loads((tmp_path / "pulled" / platform.arch / "index.json").read_text())
            assert oci_index["manifests"][0]["digest"] == platform.digest

    # the simulator's registry (distribution) refuses an index whose platforms are not all there: kubeplay
    # push then tags the cut index, says so, and every bundled platform is pullable by the tag
    host = upstream.registry_url.removeprefix("https://")
    target = Target.parse(f"{host}/site")
    report = push_bundle(out, target, upstream.ca_cert, Credentials(upstream.username, upstream.password), jobs=2)
    pushed_repository = target.repository(record.repository)
    assert report.tagged_cut == [f"{pushed_repository}:v1"]
    pushed = skopeo(
        "inspect", "--cert-dir", str(upstream.cert_dir), "--creds", f"{upstream.username}:{upstream.password}",
        "--raw", f"docker://{host}/{pushed_repository}:v1",
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    assert digest_of(pushed.stdout.encode()) == record.cut_index
    again = push_bundle(out, target, upstream.ca_cert, Credentials(upstream.username, upstream.password), jobs=2)
    assert again.manifests_put == 0 and again.tagged_cut == [f"{pushed_repository}:v1"]
