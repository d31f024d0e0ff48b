"""sbom.cdx.json: valid CycloneDX 1.6 (the library's own validator), one component per thing the bundle
carries with the package URL an auditor expects, and exactly what SHA256SUMS lists."""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from kubeplay.bundle.manifest import (
    ImageRecord,
    OsRepoRecord,
    PlatformRecord,
    read_manifest,
    read_sha256sums,
    write_manifest,
    write_sha256sums,
)
from kubeplay.bundle.sbom import SBOM_NAME, build_sbom, check_coverage, write_sbom

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bootstrap_fixture import put_blob
from tests.bundle_fixture import BLOBS, KUBEADM, make_bundle
from tests.conftest import run_kubeplay

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DEB = "repos/apt/debian/bookworm/pool/main/c/curl/curl_7.88.1-10+deb12u8_amd64.deb"
RPM = "repos/rpm/rocky/9/x86_64/Packages/c/curl-7.76.1-29.el9.x86_64.rpm"
WHEEL = "wheels/jmespath-1.0.1-py3-none-any.whl"


def _multiarch_image(root: Path) -> ImageRecord:
    platforms = []
    for arch in ("amd64", "arm64"):
        config = put_blob(root, json.dumps({"architecture": arch}).encode())
        layer = put_blob(root, f"layer of {arch}".encode() * 100)
        body = json.dumps(
            {"schemaVersion": 2, "mediaType": MANIFEST, "config": {"digest": config}, "layers": [{"digest": layer}]}
        ).encode()
        platforms.append(
            PlatformRecord(
                platform=f"linux/{arch}", arch=arch, digest=put_blob(root, body), media_type=MANIFEST, size=len(body),
                blobs_size=1000,
            )
        )  # fmt: skip
    index = json.dumps({"schemaVersion": 2, "manifests": [{"digest": p.digest} for p in platforms]}).encode()
    digest = put_blob(root, index)
    link = root / "registry/docker/registry/v2/repositories/library/coredns/_manifests/tags/v1.12.0/current/link"
    link.parent.mkdir(parents=True)
    link.write_text(digest)
    return ImageRecord(
        name="coredns", variable="coredns_image_repo", upstream="registry.k8s.io/coredns/coredns:v1.12.0",
        upstream_digest="sha256:" + "1" * 64, repository="library/coredns", tag="v1.12.0", digest=digest,
        media_type=INDEX, platforms=platforms, size=len(index),
    )  # fmt: skip


def _apt_repo(root: Path) -> OsRepoRecord:
    deb = root / DEB
    deb.parent.mkdir(parents=True)
    deb.write_bytes(b"not really a deb")
    packages = root / "repos/apt/debian/bookworm/dists/bookworm/main/binary-amd64/Packages"
    packages.parent.mkdir(parents=True)
    packages.write_text(
        "Package: curl\nVersion: 7.88.1-10+deb12u8\nArchitecture: amd64\n"
        f"Filename: {DEB.removeprefix('repos/apt/debian/bookworm/')}\nSize: 16\n"
        f"SHA256: {hashlib.sha256(deb.read_bytes()).hexdigest()}\n"
    )
    return OsRepoRecord(family="apt", distro="debian", release="12", arches=["amd64"], path="repos/apt/debian/bookworm")


def _rpm_repo(root: Path) -> OsRepoRecord:
    rpm = root / RPM
    rpm.parent.mkdir(parents=True)
    rpm.write_bytes(b"not really an rpm")
    repodata = root / "repos/rpm/rocky/9/x86_64/repodata"
    repodata.mkdir(parents=True)
    primary = (
        '<metadata xmlns="http://linux.duke.edu/metadata/common" packages="1"><package type="rpm">'
        '<name>curl</name><arch>x86_64</arch><version epoch="1" ver="7.76.1" rel="29.el9"/>'
        f'<checksum type="sha256" pkgid="YES">{hashlib.sha256(rpm.read_bytes()).hexdigest()}</checksum>'
        '<location href="Packages/c/curl-7.76.1-29.el9.x86_64.rpm"/></package></metadata>'
    )
    (repodata / "abc-primary.xml.gz").write_bytes(gzip.compress(primary.encode()))
    (repodata / "repomd.xml").write_text(
        '<repomd xmlns="http://linux.duke.edu/metadata/repo"><data type="primary">'
        '<location href="repodata/abc-primary.xml.gz"/></data></repomd>'
    )
    return OsRepoRecord(family="rpm", distro="rocky", release="9", arches=["amd64"], path="repos/rpm/rocky/9")


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    root = make_bundle(tmp_path / "bundle")
    manifest = read_manifest(root)
    manifest.images.append(_multiarch_image(root))
    manifest.os_repos = [_apt_repo(root), _rpm_repo(root)]
    (root / "wheels").mkdir()
    (root / WHEEL).write_bytes(b"not really a wheel")
    write_manifest(root, manifest)
    write_sha256sums(root, use_cache=False)
    write_sbom(root, manifest, read_sha256sums(root / "SHA256SUMS"))
    write_sha256sums(root, use_cache=False)
    return root


def _sbom(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / SBOM_NAME).read_text())


def _by_ref(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["bom-ref"]: c for c in document["components"]}


def test_sbom_validates_against_the_cyclonedx_1_6_schema(bundle: Path) -> None:
    text = (bundle / SBOM_NAME).read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text, all_errors=True) is None
    document = json.loads(text)
    assert document["specVersion"] == "1.6"
    assert SBOM_NAME in read_sha256sums(bundle / "SHA256SUMS")  # so the signature covers it


def test_every_kind_of_content_has_its_package_url(bundle: Path) -> None:
    components = _by_ref(_sbom(bundle))
    sums = read_sha256sums(bundle / "SHA256SUMS")
    kubeadm = components[f"file:{KUBEADM}"]
    assert kubeadm["purl"].startswith("pkg:generic/kubeadm?")
    assert "download_url=https://dl.k8s.io/release/v1.33.4/bin/linux/amd64/kubeadm" in kubeadm["purl"]
    assert f"checksum=sha256:{sums[KUBEADM]}" in kubeadm["purl"]
    assert kubeadm["hashes"] == [{"alg": "SHA-256", "content": sums[KUBEADM]}]
    coredns = [c for c in components.values() if c["name"] == "coredns"]
    assert len(coredns) == 3  # the index and one manifest per arch
    index = next(c for c in coredns if "arch=" not in c["purl"])
    assert index["purl"].startswith("pkg:oci/coredns@sha256:")
    assert "repository_url=registry.k8s.io/coredns/coredns" in index["purl"] and "tag=v1.12.0" in index["purl"]
    arches = sorted(c["purl"].split("arch=")[1].split("&")[0] for c in coredns if "arch=" in c["purl"])
    assert arches == ["amd64", "arm64"]
    assert components[f"deb:{DEB}"]["purl"] == ("pkg:deb/debian/curl@7.88.1-10%2Bdeb12u8?arch=amd64&distro=debian-12")
    assert components[f"rpm:{RPM}"]["purl"] == "pkg:rpm/rocky/curl@7.76.1-29.el9?arch=x86_64&distro=rocky-9&epoch=1"
    assert components[f"wheel:{WHEEL}"]["purl"] == "pkg:pypi/jmespath@1.0.1"
    assert components[f"wheel:{WHEEL}"]["hashes"][0]["content"] == sums[WHEEL]
    assert components["kubespray"]["purl"] == "pkg:github/kubernetes-sigs/kubespray@v2.31.0"


def test_relations_bundle_to_everything_and_index_to_its_manifests(bundle: Path) -> None:
    document = _sbom(bundle)
    depends = {d["ref"]: set(d.get("dependsOn", [])) for d in document["dependencies"]}
    components = _by_ref(document)
    index = next(r for r, c in components.items() if c["name"] == "coredns" and "arch=" not in c["purl"])
    children = {r for r, c in components.items() if c["name"] == "coredns" and "arch=" in c["purl"]}
    assert depends[index] == children
    assert document["metadata"]["component"]["bom-ref"] == "bundle"
    assert depends["bundle"] == set(components) - children


def test_lists_exactly_what_sha256sums_lists(bundle: Path) -> None:
    sums = read_sha256sums(bundle / "SHA256SUMS")
    text = (bundle / SBOM_NAME).read_text()
    assert check_coverage(bundle, text, sums).exact
    manifest = read_manifest(bundle)
    paths = {p["value"] for c in json.loads(text)["components"] for p in c.get("properties", [])}
    assert {r.path for r in manifest.files} <= paths
    # a file the SBOM does not know, and one it names that is gone, are both reported
    extra = dict(sums, **{"files/example.org/unknown.bin": "0" * 64})
    del extra[WHEEL]
    coverage = check_coverage(bundle, text, extra)
    assert coverage.unlisted == ["files/example.org/unknown.bin"]
    assert coverage.absent == [WHEEL]
    stray_blob = f"{BLOBS}/ab/{'ab' * 32}/data"
    assert check_coverage(bundle, text, dict(sums, **{stray_blob: "ab" * 32})).unlisted == [stray_blob]


def test_same_bundle_same_sbom(bundle: Path) -> None:
    manifest = read_manifest(bundle)
    sums = read_sha256sums(bundle / "SHA256SUMS")
    assert build_sbom(bundle, manifest, sums) == build_sbom(bundle, manifest, sums)


def test_spdx_conversion_validates_with_spdx_tools(bundle: Path, tmp_path: Path) -> None:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    target = tmp_path / "bundle.spdx.json"
    proc = run_kubeplay("sbom", str(bundle), "--format", "spdx-json", "-o", str(target))
    assert proc.returncode == 0, proc.stderr
    document = parse_file(str(target))
    assert validate_full_spdx_document(document) == []
    assert document.creation_info.spdx_version == "SPDX-2.3"
    components = _sbom(bundle)["components"]
    assert len(document.packages) == len(components) + 1  # and the bundle itself
    purls = {ref.locator for package in document.packages for ref in package.external_references}
    assert {c["purl"] for c in components if "purl" in c} == purls
    contains = [r for r in document.relationships if r.relationship_type.name == "CONTAINS"]
    depends = [r for r in document.relationships if r.relationship_type.name == "DEPENDS_ON"]
    assert len(depends) == 2  # the coredns index on its amd64 and arm64 manifests
    assert len(contains) == len(components) - 2
    plain = run_kubeplay("sbom", str(bundle))
    assert json.loads(plain.stdout) == _sbom(bundle)


def test_no_change_rebuild_reuses_the_sbom_with_this_builds_time_and_manifest(bundle: Path) -> None:
    (bundle / ".kubeplay-build").mkdir()
    manifest = read_manifest(bundle)
    write_sha256sums(bundle, use_cache=False)
    write_sbom(bundle, manifest, read_sha256sums(bundle / "SHA256SUMS"))  # fills the cache
    manifest.created_at = "2026-02-03T04:05:06Z"  # a rebuild: only the time, so kubeplay.json's digest, changed
    write_manifest(bundle, manifest)
    write_sha256sums(bundle, use_cache=False)
    sums = read_sha256sums(bundle / "SHA256SUMS")
    reused = json.loads(write_sbom(bundle, manifest, sums).read_text())
    assert reused == json.loads(build_sbom(bundle, manifest, sums))
    assert _by_ref(reused)["own:kubeplay.json"]["hashes"][0]["content"] == sums["kubeplay.json"]
    # changed content is not reused: a new file gets its component
    (bundle / "wheels/netaddr-1.3.0-py3-none-any.whl").write_bytes(b"another wheel")
    write_sha256sums(bundle, use_cache=False)
    fresh = json.loads(write_sbom(bundle, manifest, read_sha256sums(bundle / "SHA256SUMS")).read_text())
    assert "wheel:wheels/netaddr-1.3.0-py3-none-any.whl" in _by_ref(fresh)
