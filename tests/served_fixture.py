"""Bundles of two Kubernetes patch versions for the served-set tests: images sharing their base layers,
versioned files, and a real apt repository (pool files, Packages, Release) of a few packages per version."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from kubeplay.bundle.manifest import (
    BundleManifest,
    FileRecord,
    ImageRecord,
    KubesprayRecord,
    OsRepoRecord,
    utc_now,
    write_manifest,
    write_sha256sums,
)
from tests.bootstrap_fixture import MT_MANIFEST, add_image, make_layer

REPO = "repos/apt/debian/bookworm"


def _deb_paragraph(name: str, version: str, filename: str, data: bytes) -> str:
    return (
        f"Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: kubeplay tests <t@localhost>\n"
        f"Installed-Size: 1\nFilename: {filename}\nSize: {len(data)}\n"
        f"SHA256: {hashlib.sha256(data).hexdigest()}\nDescription: test package {name}\n"
    )


def make_version(
    root: Path,
    kube_version: str,
    *,
    files: int = 3,
    file_size: int = 64 << 10,
    images: int = 2,
    debs: dict[str, str] | None = None,
    extra_files: int = 0,
) -> Path:
    """A full bundle of Kubernetes `kube_version` at root/<kube_version>. Files and images are versioned;
    image base layers, `common.txt` and the packages of equal version are the same bytes in every version."""
    bundle = root / f"bundle-{kube_version}"
    rng = random.Random(kube_version)
    file_records = []
    for i in range(files + extra_files):
        rel = f"files/dl.k8s.io/release/v{kube_version}/bin/linux/amd64/tool{i}"
        data = rng.randbytes(file_size if i < files else 512)
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_bytes(data)
        file_records.append(
            FileRecord(name=f"tool{i}", arch="amd64", url=f"https://{rel[6:]}", path=rel, variable=f"tool{i}_url",
                       size=len(data), sha256=hashlib.sha256(data).hexdigest())
        )  # fmt: skip
    common = b"the same in every version\n" * 100
    (bundle / "files/example.org/common.txt").parent.mkdir(parents=True, exist_ok=True)
    (bundle / "files/example.org/common.txt").write_bytes(common)
    base = make_layer(7, 32 << 10)
    image_records = []
    for i in range(images):
        own = make_layer(int(hashlib.sha256(f"{kube_version} {i}".encode()).hexdigest()[:6], 16), 16 << 10)
        repo = f"library/registry.k8s.io/kube-app{i}"
        tag = f"v{kube_version}"
        md = add_image(bundle, repo, tag, [base, own])
        image_records.append(
            ImageRecord(name=f"kube-app{i}", variable=f"app{i}_image_repo", upstream=f"registry.k8s.io/kube-app{i}:{tag}",
                        upstream_digest=md, repository=repo, tag=tag, digest=md, media_type=MT_MANIFEST,
                        size=(32 << 10) + (16 << 10))
        )  # fmt: skip
    paragraphs = []
    for name, version in sorted((debs or {"kube-tools": kube_version, "common-tool": "1.0"}).items()):
        filename = f"pool/main/{name[0]}/{name}/{name}_{version}_amd64.deb"
        data = hashlib.sha256(f"{name} {version}".encode()).digest() * 64
        (bundle / REPO / filename).parent.mkdir(parents=True, exist_ok=True)
        (bundle / REPO / filename).write_bytes(data)
        paragraphs.append(_deb_paragraph(name, version, filename, data))
    dist = bundle / REPO / "dists/bookworm"
    (dist / "main/binary-amd64").mkdir(parents=True, exist_ok=True)
    (dist / "main/binary-amd64/Packages").write_text("\n".join(paragraphs))
    (dist / "Release").write_text("Suite: bookworm\nCodename: bookworm\nComponents: main\nArchitectures: amd64\n")
    (bundle / "repos/kubeplay-archive-keyring.gpg").write_bytes(b"the bundle's own key: replaced on the node\n")
    spray = bundle / "kubespray"
    (spray / "playbooks").mkdir(parents=True, exist_ok=True)
    (spray / "playbooks/cluster.yml").write_text("- import_playbook: x.yml\n")
    (spray / "VERSION").write_text(f"for {kube_version}\n")
    (bundle / "install.sh").write_text("#!/bin/sh\n")
    write_manifest(
        bundle,
        BundleManifest(
            kubeplay_version="0.1.0", created_at=utc_now(), spec={"kube_version": kube_version},
            kubespray=KubesprayRecord(version="v2.31.0", source="test"), kube_version=kube_version,
            arches=["amd64"], files=file_records, images=image_records,
            os_repos=[OsRepoRecord(family="apt", distro="debian", release="12", arches=["amd64"], path=REPO)],
        ),
    )  # fmt: skip
    write_sha256sums(bundle, use_cache=False)
    return bundle


def digests(bundle: Path) -> dict[str, str]:
    from kubeplay.bundle.manifest import read_sha256sums

    return read_sha256sums(bundle / "SHA256SUMS")


def make_delta(full: Path, base_digests: set[str], base_identities: list[str], dest: Path) -> Path:
    """A delta bundle of `full` against a base holding `base_digests`, laid out as bundle/delta.py says."""
    from kubeplay.bundle.delta import DELTA_NAME, DeltaBase, DeltaRecord, DeltaTarget, full_sums_sha256
    from kubeplay.bundle.inventory import TOP_LEVEL_OWN, Entry, identity_of

    content = {rel: Entry(sha256=d, size=(full / rel).stat().st_size) for rel, d in digests(full).items()}
    for rel, entry in content.items():
        if rel in TOP_LEVEL_OWN or entry.sha256 not in base_digests:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes((full / rel).read_bytes())
    (dest / "kubeplay.json").write_bytes((full / "kubeplay.json").read_bytes())
    manifest = json.loads((full / "kubeplay.json").read_text())
    record = DeltaRecord(
        target=DeltaTarget(
            identity=identity_of((full / "kubeplay.json").read_bytes()),
            kube_version=manifest.get("kube_version", "0.0.0"),
            kubespray_version=(manifest.get("kubespray") or {}).get("version", ""),
            sums_sha256=full_sums_sha256(content),
        ),
        base=DeltaBase(identities=base_identities, kube_versions=[], source="test"),
        content=content,
    )
    (dest / DELTA_NAME).write_text(record.model_dump_json())
    write_sha256sums(dest, use_cache=False)
    return dest
