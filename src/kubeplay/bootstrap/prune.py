"""`kubeplay prune --keep VERSION...`: remove from the served set what only other versions use.

Never implicit: installing only adds. The order is the reverse of a merge, so nothing still served
ever points at something already gone: the pruned versions stop being served (their version.json goes
first), the OS repos are re-indexed over the kept versions, registry tags that a pruned version had
moved are pointed back at the kept version's manifest, then tags, manifests and blobs that only pruned
versions listed are deleted, in that order, and last their version directories. A run killed half-way is
finished by running it again (version directories without version.json are pruned too).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from kubeplay.bootstrap.merge import reindex_served, served_lock
from kubeplay.bootstrap.paths import HostPaths
from kubeplay.bootstrap.served import (
    VERSION_RECORD,
    VERSIONS_DIR,
    ServedVersion,
    find_version,
    is_rebuilt_path,
    is_version_own,
    served_versions,
)
from kubeplay.bundle.manifest import SUMS_NAME, read_sha256sums
from kubeplay.errors import BadInput
from kubeplay.state import atomic_write


@dataclass
class PruneResult:
    kept: list[str]
    removed: list[str]
    files: int
    bytes: int


def _union_paths(vdir: Path) -> dict[str, str]:
    sums = vdir / SUMS_NAME
    if not sums.is_file():
        return {}
    return {rel: d for rel, d in read_sha256sums(sums).items() if not is_version_own(rel) and not is_rebuilt_path(rel)}


def _delete_rank(rel: str) -> int:
    if rel.startswith("registry/"):
        if "/_manifests/tags/" in rel:
            return 0
        return 2 if "/blobs/" in rel else 1
    return 1


def _restore_tags(root: Path, kept: list[ServedVersion]) -> None:
    """Point every tag a kept version lists at that version's manifest (the newest kept wins)."""
    for v in kept:
        for rec in [*(v.manifest.get("images") or []), *(v.manifest.get("charts") or [])]:
            if not isinstance(rec, dict) or not rec.get("tag") or not rec.get("repository"):
                continue
            link = root / "registry/docker/registry/v2/repositories" / rec["repository"]
            link = link / "_manifests/tags" / str(rec["tag"]) / "current/link"
            want = str(rec["digest"]).encode()
            if link.parent.is_dir() and (not link.is_file() or link.read_bytes() != want):
                atomic_write(link, want)


def prune(paths: HostPaths, keep: list[str], dry_run: bool = False) -> PruneResult:
    """Keep the served versions named in `keep` (Kubernetes versions or bundle identities); remove the rest."""
    if not keep:
        raise BadInput("name at least one version to keep", hint="kubeplay prune --keep 1.35.4 (see `kubeplay status`)")
    with served_lock(paths.served):
        kept = {find_version(paths, k).identity for k in keep}
        versions = served_versions(paths)
        kept_versions = [v for v in versions if v.identity in kept]
        base = paths.served / VERSIONS_DIR
        doomed = sorted(d for d in base.iterdir() if d.is_dir() and d.name not in kept) if base.is_dir() else []
        names = {v.identity: v.kube_version for v in versions}
        keep_paths: set[str] = set()
        for v in kept_versions:
            keep_paths |= set(_union_paths(v.dir))
        gone: set[str] = set()
        for d in doomed:
            gone |= {rel for rel in _union_paths(d) if rel not in keep_paths}
        root = paths.served
        size = sum((root / rel).stat().st_size for rel in gone if (root / rel).is_file())
        removed = [names.get(d.name, f"unfinished {d.name[:12]}") for d in doomed]
        if dry_run or not doomed:
            return PruneResult([v.kube_version for v in kept_versions], removed, len(gone), size)
        for d in doomed:
            (d / VERSION_RECORD).unlink(missing_ok=True)
        reindex_served(paths)
        _restore_tags(root, kept_versions)
        for rel in sorted(gone, key=lambda r: (_delete_rank(r), r)):
            target = root / rel  # `gone` holds union paths only
            target.unlink(missing_ok=True)
            _remove_empty_parents(target.parent, root)
        for d in doomed:
            shutil.rmtree(d, ignore_errors=True)
        return PruneResult([v.kube_version for v in kept_versions], removed, len(gone), size)


def _remove_empty_parents(directory: Path, stop: Path) -> None:
    while directory != stop and directory.is_relative_to(stop):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent
