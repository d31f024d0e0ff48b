"""The served set: what nginx and the registry serve on the deploy node, the union of every installed bundle.

Layout (under `HostPaths.served`, /var/lib/kubeplay/served):

    files/ registry/ repos/      the union of the bundles' content, each path once (nginx and registry roots)
    versions/<identity>/         one per installed bundle: its kubeplay.json, the full SHA256SUMS,
                                 version.json (when, what), kubespray/ (its tree), wheels/ (its venv's;
                                 two bundles' kubeplay wheels share a name, not their bytes), and
                                 repo-indexes/ (its own apt indexes, kept so the union can be re-indexed
                                 after a prune)

A bundle's identity is the sha256 of its kubeplay.json. Installing adds; only `kubeplay prune` removes.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeplay.bootstrap.bundleinfo import BundleFacts, RepoTarget
from kubeplay.bootstrap.paths import HostPaths
from kubeplay.bundle.inventory import Entry, Inventory, make_inventory
from kubeplay.bundle.manifest import MANIFEST_NAME, SUMS_NAME, read_sha256sums
from kubeplay.errors import BadInput, BundleError

VERSIONS_DIR = "versions"
REPO_INDEXES = "repo-indexes"
OWN_TREES = ("kubespray/", "wheels/")


def is_version_own(rel: str) -> bool:
    """Bundle paths each version keeps for itself (top-level files, its kubespray tree and wheels), not in
    the union nginx serves."""
    return "/" not in rel or rel.startswith(OWN_TREES)


def is_rebuilt_path(rel: str) -> bool:
    """Repo metadata and the repo key: written by the deploy node over the union, never merged."""
    parts = rel.split("/")
    return parts[0] == "repos" and ("dists" in parts or "repodata" in parts or len(parts) == 2)


def served_location(root: Path, version_dir: Path, rel: str) -> Path:
    """Where a bundle path lives in the served set: the version's own files (top level, kubespray tree,
    wheels) in its version directory, everything else in the union."""
    if is_version_own(rel):
        return version_dir / rel
    return root / rel


VERSION_RECORD = "version.json"


@dataclass(frozen=True)
class ServedVersion:
    """One bundle the deploy node serves."""

    identity: str
    kube_version: str
    kubespray_version: str
    installed_at: str
    dir: Path  # served/versions/<identity>
    served_root: Path
    manifest: dict[str, Any]
    delta_of: tuple[str, ...] = ()  # the base identities, when it came as a delta

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST_NAME

    @property
    def sums_path(self) -> Path:
        return self.dir / SUMS_NAME

    def facts(self) -> BundleFacts:
        """This version as deploy reads a bundle: files, repos and registry in the served root, its
        kubespray tree in its version directory."""
        repos = [
            RepoTarget(r["family"], r["distro"], str(r["release"]), self.served_root / r["path"])
            for r in self.manifest.get("os_repos", [])
            if isinstance(r, dict) and {"family", "distro", "release", "path"} <= r.keys()
        ]
        return BundleFacts(
            root=self.served_root,
            kube_version=self.kube_version,
            arches=tuple(str(a) for a in self.manifest.get("arches") or []),
            repos=tuple(repos),
            manifest=self.manifest,
            kubespray_root=self.dir,
        )

    def stored_at(self, rel: str) -> Path:
        """Where this version's copy of bundle path `rel` is kept: its own files and its own repo indexes
        (the union's are rebuilt) in its directory, everything else in the union."""
        if is_rebuilt_path(rel):
            return self.dir / REPO_INDEXES / rel
        return served_location(self.served_root, self.dir, rel)

    def describe(self) -> str:
        return f"Kubernetes {self.kube_version} (kubespray {self.kubespray_version}, {self.identity[:12]})"


def _load_version(served_root: Path, vdir: Path) -> ServedVersion | None:
    try:
        record = json.loads((vdir / VERSION_RECORD).read_text(encoding="utf-8"))
        manifest = json.loads((vdir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None  # a version whose merge has not finished: not served yet
    except (OSError, ValueError) as exc:
        raise BundleError(
            f"{vdir}: unreadable served version record: {exc}", hint="run `kubeplay install` again"
        ) from None
    return ServedVersion(
        identity=vdir.name,
        kube_version=str(record["kube_version"]),
        kubespray_version=str(record.get("kubespray_version", "")),
        installed_at=str(record.get("installed_at", "")),
        dir=vdir,
        served_root=served_root,
        manifest=manifest,
        delta_of=tuple(record.get("delta_of") or ()),
    )


def served_versions(paths: HostPaths) -> list[ServedVersion]:
    """Every bundle the deploy node serves, oldest install first."""
    base = paths.served / VERSIONS_DIR
    if not base.is_dir():
        return []
    found = [v for d in sorted(base.iterdir()) if d.is_dir() and (v := _load_version(paths.served, d))]
    return sorted(found, key=lambda v: (v.installed_at, v.identity))


def normalize_version(version: str) -> str:
    """ "v1.35.4" and "1.35.4" name the same Kubernetes version."""
    return version.strip().removeprefix("v")


def find_version(paths: HostPaths, version: str) -> ServedVersion:
    """The served bundle of Kubernetes `version` (or the bundle whose identity starts with `version`);
    raise BadInput listing what is served. With two bundles of one Kubernetes version, the newest."""
    versions = served_versions(paths)
    wanted = normalize_version(version)
    matches = [v for v in versions if normalize_version(v.kube_version) == wanted]
    if not matches and len(wanted) >= 12:
        matches = [v for v in versions if v.identity.startswith(wanted)]
    if matches:
        return matches[-1]
    served = ", ".join(v.describe() for v in versions) or "nothing (no bundle installed)"
    raise BadInput(
        f"Kubernetes {version} is not served by this deploy node; it serves {served}",
        hint="install the bundle (or delta) of that version first: ./install.sh in its directory",
    )


def served_facts(paths: HostPaths, identity: str | None = None) -> BundleFacts:
    """The served version with `identity` (default: the newest) as BundleFacts; BadInput when none."""
    versions = served_versions(paths)
    chosen = [v for v in versions if identity is None or v.identity == identity]
    if not chosen:
        raise BadInput(
            f"{paths.served}: this deploy node serves no bundle" + (f" {identity[:12]}" if identity else ""),
            hint="run ./install.sh (or `kubeplay install`) in the bundle directory",
        )
    return chosen[-1].facts()


def served_inventory(paths: HostPaths) -> Inventory:
    """What this deploy node serves, as digests (`kubeplay status --inventory`): every file of every
    served version, keyed by where the served set keeps it."""
    versions = served_versions(paths)
    if not versions:
        raise BadInput(
            f"{paths.served}: this deploy node serves no bundle yet, so there is no inventory to write",
            hint="install a full bundle first (./install.sh); a delta is built against what is installed",
        )
    # Keyed by where each file is stored in the served set, so two versions' kubeplay.json, kubespray
    # trees and repo indexes are all listed (a bundle's inventory is keyed by bundle path instead).
    entries: dict[str, Entry] = {}
    for v in versions:
        for rel, digest in read_sha256sums(v.sums_path).items():
            where = v.stored_at(rel)
            size = where.stat().st_size if where.is_file() else 0
            entries[where.relative_to(paths.served).as_posix()] = Entry(sha256=digest, size=size)
    manifests = [(v.manifest_path.read_bytes(), v.installed_at) for v in versions]
    return make_inventory(f"deploy node {socket.gethostname()} ({paths.served})", manifests, entries)
