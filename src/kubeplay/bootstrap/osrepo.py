"""The bundle's own OS repo on the deploy node (file://, signature checked), and packages installed from it.

apt: a deb822 .sources file with Signed-By the bundle's key; updates and installs read only that source,
so a site's unreachable mirrors never get in the way. rpm: a .repo file with gpgcheck=1.
"""

from __future__ import annotations

import gzip
import lzma
import os
import re
from dataclasses import dataclass
from pathlib import Path

from kubeplay.bootstrap.bundleinfo import RepoTarget
from kubeplay.bootstrap.render import render
from kubeplay.errors import BundleError
from kubeplay.osrepo.signing import KEYRING_NAME

# What the deploy node runs, by family; the first name of each alternative the repo carries wins.
APT_PACKAGES: tuple[tuple[str, ...], ...] = (
    ("nginx-light", "nginx"),
    ("chrony",),
    ("docker-registry",),
    ("ca-certificates",),
    ("curl",),
    ("gpg",),
    ("gpg-agent",),
)
RPM_PACKAGES: tuple[tuple[str, ...], ...] = (
    ("nginx",),
    ("chrony",),
    ("docker-distribution", "distribution"),
    ("ca-certificates",),
    ("curl",),
    ("gnupg2",),
)
KEY_PATTERNS = ("*.gpg", "*.asc", "KEY*", "RPM-GPG-KEY*", "*.pub")


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: str
    components: str
    signed_by: Path


def find_key(repo: RepoTarget, bundle_root: Path) -> Path:
    """The public key that signs the bundle's repo; raise BundleError if the bundle carries none."""
    standard = bundle_root / "repos" / KEYRING_NAME
    if standard.is_file():
        return standard
    for base in (
        repo.path,
        repo.path.parent,
        bundle_root / "repos",
        bundle_root / "repos" / repo.family,
        bundle_root / "keys",
    ):
        for pattern in KEY_PATTERNS:
            for candidate in sorted(base.glob(pattern)):
                if candidate.is_file() and candidate.name not in ("Release.gpg", "InRelease", "repomd.xml.asc"):
                    return candidate
    raise BundleError(
        f"{repo.path}: no signing key found in the bundle",
        hint="the bundle's OS repo must be signed; rebuild it with `kubeplay build`",
    )


def key_is_armored(data: bytes) -> bool:
    return data.lstrip().startswith(b"-----BEGIN PGP")


def apt_suites(repo_path: Path) -> list[tuple[str, list[str]]]:
    """(suite, components) for each dists/<suite>/Release in the repo; ("./", []) for a flat repo."""
    found: list[tuple[str, list[str]]] = []
    dists = repo_path / "dists"
    if dists.is_dir():
        for release in sorted(dists.glob("*/Release")):
            comps: list[str] = []
            for line in release.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("Components:"):
                    comps = line.split(":", 1)[1].split()
            found.append((release.parent.name, comps or ["main"]))
    elif (repo_path / "Release").exists():
        found.append(("./", []))
    return found


def render_apt_source(repo_path: Path, keyring: Path) -> str:
    suites = apt_suites(repo_path)
    if not suites:
        raise BundleError(f"{repo_path}: not an apt repository (no dists/*/Release)", hint="run `kubeplay verify`")
    return render(
        "kubeplay.sources.j2",
        uri=repo_path.resolve().as_uri(),
        suites=" ".join(s for s, _ in suites),
        components=" ".join(sorted({c for _, cs in suites for c in cs})),
        signed_by=keyring,
    )


def distro_rpm_keys(repo_path: Path) -> list[Path]:
    """Distro package-signing keys shipped beside an rpm repo (RPM-GPG-KEY-*), for gpgcheck."""
    return sorted(p for p in repo_path.glob("RPM-GPG-KEY*") if p.is_file())


def render_yum_repo(repo_path: Path, bundle_key: Path, distro_keys: list[Path] | None = None) -> str:
    """repomd.xml is checked against the bundle key; packages against the distro keys when shipped."""
    base = repo_path.resolve().as_uri() + "/$basearch"
    keys = [bundle_key, *(distro_keys or [])]
    return render(
        "kubeplay.repo.j2",
        baseurl=base,
        gpgkeys=[k.resolve().as_uri() for k in keys],
        gpgcheck=1 if distro_keys else 0,
    )


def _read_index(path: Path) -> str:
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()).decode(errors="replace")
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes()).decode(errors="replace")
    return path.read_text(encoding="utf-8", errors="replace")


def apt_package_names(repo_path: Path, arch: str) -> set[str]:
    """Package names in the repo's Packages indexes for `arch` (and all)."""
    names: set[str] = set()
    seen: set[str] = set()
    for idx in sorted(repo_path.glob("**/Packages*")):
        if f"binary-{arch}" not in idx.parent.name and "binary-all" not in idx.parent.name and idx.parent != repo_path:
            continue
        key = str(idx.with_suffix("")) if idx.suffix in (".gz", ".xz") else str(idx)
        if key in seen:
            continue
        seen.add(key)
        names.update(re.findall(r"^Package:\s*(\S+)", _read_index(idx), flags=re.M))
    return names


def rpm_package_names(repo_path: Path) -> set[str]:
    """Package names from the rpm file names under the repo (name-version-release.arch.rpm)."""
    names = set()
    for rpm in repo_path.glob("**/*.rpm"):
        m = re.match(r"^(.+)-[^-]+-[^-]+\.[^.]+\.rpm$", rpm.name)
        if m:
            names.add(m.group(1))
    return names


def choose_packages(wanted: tuple[tuple[str, ...], ...], available: set[str]) -> tuple[list[str], list[str]]:
    """(packages to install, alternatives missing from the repo)."""
    chosen: list[str] = []
    missing: list[str] = []
    for alternatives in wanted:
        pick = next((p for p in alternatives if p in available), None)
        if pick:
            chosen.append(pick)
        else:
            missing.append(" | ".join(alternatives))
    return chosen, missing


def apt_options(sources: Path) -> list[str]:
    """apt-get options that make it read only kubeplay's source list."""
    return [
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", "Dir::Etc::SourceParts=-",
        "-o", "APT::Get::List-Cleanup=0",
    ]  # fmt: skip


def apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
