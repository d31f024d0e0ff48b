"""What install needs to know about an unpacked bundle: arches, OS repos, registry storage, file digests.

Read from the bundle's kubeplay.json, SHA256SUMS and its directory layout (../shared/DESIGN.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeplay.bundle.manifest import MANIFEST_NAME, read_sha256sums
from kubeplay.errors import BundleError


@dataclass(frozen=True)
class RepoTarget:
    family: str  # "apt" or "rpm"
    distro: str
    release: str
    path: Path  # repos/apt/<distro>/<codename> or repos/rpm/<distro>/<release>


@dataclass(frozen=True)
class BundleFacts:
    root: Path
    kube_version: str
    arches: tuple[str, ...]
    repos: tuple[RepoTarget, ...]
    manifest: dict[str, Any] = field(default_factory=dict, compare=False)
    # Where the kubespray tree lives when not inside `root` (a served version: served/versions/<identity>).
    kubespray_root: Path | None = None

    @property
    def kubespray_dir(self) -> Path:
        spray = self.manifest.get("kubespray") or {}
        rel = str(spray.get("path", "kubespray")) if isinstance(spray, dict) else "kubespray"
        return (self.kubespray_root or self.root) / rel

    @property
    def registry_dir(self) -> Path:
        return self.root / "registry"

    @property
    def sums(self) -> Path:
        return self.root / "SHA256SUMS"

    def repo_for(self, distro: str, *releases: str) -> RepoTarget | None:
        """The repo for `distro` under any of the names a release goes by (version, major, codename)."""
        names = {r for r in releases if r}
        for r in self.repos:
            if r.distro == distro and (r.release in names or r.path.name in names):
                return r
        return None

    def os_names(self) -> list[str]:
        return [f"{r.distro} {r.release}" for r in self.repos]


def _repo_targets(root: Path) -> list[RepoTarget]:
    found: list[RepoTarget] = []
    for family in ("apt", "rpm"):
        base = root / "repos" / family
        if not base.is_dir():
            continue
        for distro in sorted(p for p in base.iterdir() if p.is_dir()):
            for release in sorted(p for p in distro.iterdir() if p.is_dir()):
                found.append(RepoTarget(family, distro.name, release.name, release))
    return found


def _manifest_arches(manifest: dict[str, Any]) -> tuple[str, ...]:
    arches = manifest.get("arches") or manifest.get("spec", {}).get("arches") or []
    return tuple(str(a) for a in arches)


def _manifest_repos(root: Path, manifest: dict[str, Any]) -> list[RepoTarget]:
    return [
        RepoTarget(r["family"], r["distro"], str(r["release"]), root / r["path"])
        for r in manifest.get("os_repos", [])
        if isinstance(r, dict) and {"family", "distro", "release", "path"} <= r.keys()
    ]


def read_bundle(root: Path) -> BundleFacts:
    """Facts about the bundle at `root`; raise BundleError when it is not a kubeplay bundle."""
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(
            f"{root}: not a kubeplay bundle (no {MANIFEST_NAME})",
            hint="run install from the unpacked bundle directory, or pass --bundle DIR",
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path}: unreadable manifest: {exc}", hint="run `kubeplay verify`") from None
    repos = _manifest_repos(root, manifest) or _repo_targets(root)
    return BundleFacts(
        root=root,
        kube_version=str(manifest.get("kube_version", "")),
        arches=_manifest_arches(manifest),
        repos=tuple(repos),
        manifest=manifest,
    )


def probe_file(facts: BundleFacts) -> tuple[str, str] | None:
    """(relative path, sha256) of the smallest file under files/, for the health check; None if none."""
    best: tuple[int, str, str] | None = None
    listed = {f["path"]: f["sha256"] for f in facts.manifest.get("files", []) if "path" in f and "sha256" in f}
    if not listed and facts.sums.exists():
        listed = read_sha256sums(facts.sums)
    for rel, digest in listed.items():
        if rel.startswith("files/"):
            p = facts.root / rel
            if p.is_file():
                size = p.stat().st_size
                if best is None or size < best[0]:
                    best = (size, rel, digest)
    return (best[1], best[2]) if best else None
