"""`lab cache prune`: remove rootfs cache entries no lab that is up was made from.

An entry is everything named after one rootfs key in the cache directory: the extracted tree
`rootfs-<key>/`, the tarball `rootfs-<key>.tar` (caches written before it was deleted after extraction),
a leftover `rootfs-<key>.tar.part` or `.rootfs-<key>.*` staging tree from an interrupted build, and the lock
file `rootfs-<key>.lock`, whose mtime is when a lab last used it. Each entry is removed under its lock,
taken without waiting: an entry a concurrent `lab up` is building or copying is busy, and is kept.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from kubeplay.errors import CacheBusy
from kubeplay.lab import record, rootfs

# rootfs-<key>, rootfs-<key>.tar, .tar.part, .lock; .rootfs-<key>.<random> is a build's staging tree (mkdtemp)
_ENTRY_NAME = re.compile(r"rootfs-([0-9a-f]{16})(?:\.tar|\.tar\.part|\.lock)?|\.rootfs-([0-9a-f]{16})\.[A-Za-z0-9_]+")


@dataclass(frozen=True)
class CacheEntry:
    """One rootfs key's files in the cache: their paths, apparent size in bytes, and when last used."""

    key: str
    paths: tuple[Path, ...]
    size: int
    last_used: float  # newest mtime of its lock file, tree or tarball (seconds since the epoch)


@dataclass
class PruneResult:
    """What prune removed, what it kept and why (key -> reason), kept entries' tarballs it deleted
    (key -> bytes), and the bytes freed in all."""

    removed: list[CacheEntry] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    tarballs: dict[str, int] = field(default_factory=dict)
    freed: int = 0


def select_prunable(entries: list[CacheEntry], in_use: set[str], keep_latest: bool = True) -> list[CacheEntry]:
    """The entries to remove: those no lab uses, less the most recently used entry when `keep_latest`.

    The most recently used entry is kept even if no lab that is up uses it, so the next `lab up` is fast.
    """
    latest = max(entries, key=lambda e: (e.last_used, e.key)).key if entries and keep_latest else None
    return [e for e in entries if e.key not in in_use and e.key != latest]


def keys_in_use(state_root: Path) -> tuple[set[str], list[str]]:
    """(rootfs keys of the labs that are up under `state_root`, names of labs that recorded no key)."""
    labs = record.list_labs(state_root)
    return {lab.rootfs_key for lab in labs if lab.rootfs_key}, [lab.name for lab in labs if not lab.rootfs_key]


def scan(cache_dir: Path) -> list[CacheEntry]:
    """Every rootfs key found in `cache_dir`, with its files, size and last use, by key."""
    if not cache_dir.is_dir():
        return []
    grouped: dict[str, list[Path]] = {}
    for path in cache_dir.iterdir():
        key = _key_of(path)
        if key:
            grouped.setdefault(key, []).append(path)
    entries = []
    for key, paths in sorted(grouped.items()):
        marks = {f"rootfs-{key}", f"rootfs-{key}.tar", f"rootfs-{key}.lock"}  # not leftovers of a failed build
        last_used = max((p.lstat().st_mtime for p in paths if p.name in marks), default=0.0)
        entries.append(CacheEntry(key=key, paths=tuple(sorted(paths)), size=_size(paths), last_used=last_used))
    return entries


def prune(cache_dir: Path, state_root: Path, keep_latest: bool = True) -> PruneResult:
    """Remove the cache entries no lab under `state_root` uses (see select_prunable); busy ones are kept."""
    entries = scan(cache_dir)
    in_use, _ = keys_in_use(state_root)
    doomed = select_prunable(entries, in_use, keep_latest)
    result = PruneResult()
    for entry in entries:
        if entry.key in in_use:
            result.kept[entry.key] = "used by a lab that is up"
        elif entry not in doomed:
            result.kept[entry.key] = "most recently used"
    for key in result.kept:
        size = _drop_tarball(cache_dir, key)
        if size is not None:
            result.tarballs[key] = size
            result.freed += size
    for entry in doomed:
        _, _, lock = rootfs.entry_paths(cache_dir, entry.key)
        try:
            with rootfs.entry_lock(lock, wait=False):
                # Looked at again under the lock: a `lab up` may have added files since the scan.
                paths = [p for p in cache_dir.iterdir() if _key_of(p) == entry.key and p != lock]
                size = _size(paths)
                for path in paths:
                    _remove(path)
                lock.unlink(missing_ok=True)  # waiters notice the unlinked file and retake a fresh one
        except CacheBusy:
            result.kept[entry.key] = "busy: a `lab up` is building or copying it"
            continue
        result.removed.append(entry)
        result.freed += size
    return result


def _drop_tarball(cache_dir: Path, key: str) -> int | None:
    # Caches made before ensure_base_tree deleted the tarball after extracting it keep both; the tree is
    # all a lab copies, so a complete tree's tarball is dead weight. Busy entries are left alone.
    tree, tarball, lock = rootfs.entry_paths(cache_dir, key)
    if not tarball.is_file():
        return None
    try:
        with rootfs.entry_lock(lock, wait=False):
            if not tree.is_dir() or not tarball.is_file():
                return None
            size = tarball.stat().st_size
            tarball.unlink()
            return size
    except CacheBusy:
        return None


def _key_of(path: Path) -> str | None:
    match = _ENTRY_NAME.fullmatch(path.name)
    return (match.group(1) or match.group(2)) if match else None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _size(paths: list[Path]) -> int:
    # Apparent size of regular files, each inode once (a rootfs tree has hard links); symlinks not followed.
    seen: set[tuple[int, int]] = set()
    total = 0
    for top in paths:
        if top.is_dir() and not top.is_symlink():
            files = [os.path.join(d, name) for d, _, names in os.walk(top) for name in names]
        else:
            files = [str(top)]
        for name in files:
            try:
                st = os.lstat(name)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
