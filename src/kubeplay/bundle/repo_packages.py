"""The OS packages a bundle's repos hold, read back from the repo indexes kubeplay wrote (apt Packages, rpm primary).

Data for the SBOM: name, version (with epoch), arch, the file's bundle path and sha256, as the index lists them.
"""

from __future__ import annotations

import gzip
import lzma
import xml.etree.ElementTree as ET  # kubeplay's own createrepo_c output, not untrusted input
from dataclasses import dataclass
from pathlib import Path

import zstandard
from debian.deb822 import Packages

from kubeplay.bundle.manifest import OsRepoRecord

_RPM_NS = {"c": "http://linux.duke.edu/metadata/common", "r": "http://linux.duke.edu/metadata/repo"}


@dataclass(frozen=True)
class RepoPackage:
    """One package file of a bundle repo."""

    family: str  # apt or rpm
    distro: str
    release: str
    name: str
    version: str  # deb: [epoch:]upstream-revision; rpm: version-release
    epoch: str | None  # rpm only (deb keeps it in version)
    arch: str
    path: str  # bundle-relative
    sha256: str


def _apt_packages(bundle_dir: Path, repo: OsRepoRecord) -> list[RepoPackage]:
    found: dict[str, RepoPackage] = {}
    for index in sorted((bundle_dir / repo.path).glob("dists/*/*/binary-*/Packages")):
        with index.open("rb") as fh:
            for para in Packages.iter_paragraphs(fh, use_apt_pkg=False):
                path = f"{repo.path}/{para['Filename']}"
                found[path] = RepoPackage(
                    "apt",
                    repo.distro,
                    repo.release,
                    para["Package"],
                    para["Version"],
                    None,
                    para["Architecture"],
                    path,
                    para["SHA256"],
                )
    return list(found.values())


def _read_compressed(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".zst":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def _rpm_packages(bundle_dir: Path, repo: OsRepoRecord) -> list[RepoPackage]:
    found: list[RepoPackage] = []
    for repomd in sorted((bundle_dir / repo.path).glob("*/repodata/repomd.xml")):
        base = repomd.parent.parent
        root = ET.fromstring(repomd.read_bytes())  # noqa: S314
        for data in root.findall("r:data", _RPM_NS):
            location = data.find("r:location", _RPM_NS)
            if data.get("type") != "primary" or location is None:
                continue
            primary = ET.fromstring(_read_compressed(base / location.get("href", "")))  # noqa: S314
            for package in primary.findall("c:package", _RPM_NS):
                version = package.find("c:version", _RPM_NS)
                checksum = package.find("c:checksum", _RPM_NS)
                href = package.find("c:location", _RPM_NS)
                if version is None or checksum is None or href is None or checksum.get("type") != "sha256":
                    continue
                epoch = version.get("epoch", "0")
                found.append(
                    RepoPackage(
                        "rpm",
                        repo.distro,
                        repo.release,
                        package.findtext("c:name", "", _RPM_NS),
                        f"{version.get('ver')}-{version.get('rel')}",
                        None if epoch == "0" else epoch,
                        package.findtext("c:arch", "", _RPM_NS),
                        (base / href.get("href", "")).relative_to(bundle_dir).as_posix(),
                        checksum.text or "",
                    )
                )
    return found


def repo_packages(bundle_dir: Path, repos: list[OsRepoRecord]) -> list[RepoPackage]:
    """Every package file of the bundle's OS repos, sorted by path."""
    packages: list[RepoPackage] = []
    for repo in repos:
        packages.extend(_apt_packages(bundle_dir, repo) if repo.family == "apt" else _rpm_packages(bundle_dir, repo))
    return sorted(packages, key=lambda p: p.path)
