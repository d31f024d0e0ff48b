"""The lab's rootfs cache: which entries `lab cache prune` removes, that it never removes a busy or used one,
and that an entry keeps only its extracted tree (the tarball is deleted once extracted)."""

from __future__ import annotations

import os
import tarfile
import time
from pathlib import Path

import pytest

from kubeplay.lab import cache, record, rootfs
from kubeplay.lab.cache import CacheEntry

KEY_A, KEY_B, KEY_C = "a" * 16, "b" * 16, "c" * 16


def entry(key: str, last_used: float) -> CacheEntry:
    return CacheEntry(key=key, paths=(), size=0, last_used=last_used)


@pytest.mark.parametrize(
    ("in_use", "keep_latest", "removed"),
    [
        (set(), True, {KEY_A, KEY_B}),  # C is the most recently used: kept for the next `lab up`
        (set(), False, {KEY_A, KEY_B, KEY_C}),
        ({KEY_A}, True, {KEY_B}),
        ({KEY_C}, True, {KEY_A, KEY_B}),  # the latest is in use anyway: nothing extra is kept
        ({KEY_A, KEY_B, KEY_C}, False, set()),
        ({"f" * 16}, False, {KEY_A, KEY_B, KEY_C}),  # a lab made from an entry no longer cached
    ],
)
def test_select_prunable_keeps_used_and_latest(in_use: set[str], keep_latest: bool, removed: set[str]) -> None:
    entries = [entry(KEY_A, 100.0), entry(KEY_B, 200.0), entry(KEY_C, 300.0)]
    assert {e.key for e in cache.select_prunable(entries, in_use, keep_latest)} == removed


def test_select_prunable_on_an_empty_cache() -> None:
    assert cache.select_prunable([], set()) == []


def fake_entry(cache_dir: Path, key: str, used: float, tree_bytes: int = 1000, tar_bytes: int = 0) -> None:
    tree, tarball, lock = rootfs.entry_paths(cache_dir, key)
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "data").write_bytes(b"x" * tree_bytes)
    os.link(tree / "etc" / "data", tree / "etc" / "hardlink")  # counted once
    (tree / "etc" / "link").symlink_to("/etc/passwd")  # never followed
    if tar_bytes:
        tarball.write_bytes(b"t" * tar_bytes)
    lock.touch()
    for path in (tree, tarball, lock):
        if path.exists():
            os.utime(path, (used, used))


def fake_lab(state_root: Path, name: str, key: str | None) -> None:
    lab_dir = state_root / name
    lab_dir.mkdir(parents=True)
    rec = record.LabRecord(
        name=name, subnet="10.213.0.0/24", bridge_ip="10.213.0.1", netns=f"kplab-{name}", dir=str(lab_dir),
        key=str(lab_dir / "id_ed25519"), known_hosts=str(lab_dir / "known_hosts"), rootfs_key=key,
    )  # fmt: skip
    record.save(rec)


def test_prune_removes_unused_entries_whole_and_counts_bytes(tmp_path: Path) -> None:
    cache_dir, state_root = tmp_path / "cache", tmp_path / "labs"
    now = time.time()
    fake_entry(cache_dir, KEY_A, now - 300, tree_bytes=1000, tar_bytes=500)  # used by a lab that is up
    fake_entry(cache_dir, KEY_B, now - 200, tree_bytes=2000, tar_bytes=700)
    fake_entry(cache_dir, KEY_C, now - 100, tree_bytes=4000)  # most recently used
    (cache_dir / f"rootfs-{KEY_B}.tar.part").write_bytes(b"p" * 30)  # an interrupted build
    (cache_dir / f".rootfs-{KEY_B}.k2j3h4").mkdir()  # an interrupted extraction
    (cache_dir / "unrelated.txt").write_text("not the cache's")
    fake_lab(state_root, "one", KEY_A)

    result = cache.prune(cache_dir, state_root)

    assert [e.key for e in result.removed] == [KEY_B]
    assert result.kept == {KEY_A: "used by a lab that is up", KEY_C: "most recently used"}
    assert result.tarballs == {KEY_A: 500}, "a kept entry's tarball is dead weight next to its tree"
    assert result.freed == 2000 + 700 + 30 + 500
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted(
        [f"rootfs-{KEY_A}", f"rootfs-{KEY_A}.lock", f"rootfs-{KEY_C}", f"rootfs-{KEY_C}.lock", "unrelated.txt"]
    )
    assert Path("/etc/passwd").is_file()

    again = cache.prune(cache_dir, state_root, keep_latest=False)
    assert [e.key for e in again.removed] == [KEY_C]
    assert again.freed == 4000
    assert (cache_dir / f"rootfs-{KEY_A}" / "etc" / "data").is_file()


def test_prune_never_removes_an_entry_a_lab_up_holds(tmp_path: Path) -> None:
    cache_dir, state_root = tmp_path / "cache", tmp_path / "labs"
    fake_entry(cache_dir, KEY_A, 100.0)
    fake_entry(cache_dir, KEY_B, 200.0)
    _, _, lock = rootfs.entry_paths(cache_dir, KEY_A)
    with rootfs.entry_lock(lock, shared=True):  # what `lab up` holds while it copies node roots
        result = cache.prune(cache_dir, state_root, keep_latest=False)
    assert [e.key for e in result.removed] == [KEY_B]
    assert "busy" in result.kept[KEY_A]
    assert (cache_dir / f"rootfs-{KEY_A}" / "etc" / "data").is_file()


def test_labs_without_a_recorded_key_are_reported(tmp_path: Path) -> None:
    fake_lab(tmp_path, "old", None)
    fake_lab(tmp_path, "new", KEY_A)
    assert cache.keys_in_use(tmp_path) == ({KEY_A}, ["old"])


def test_an_entry_keeps_only_its_tree_once_extracted(tmp_path: Path) -> None:
    spec = rootfs.RootfsSpec()
    tree, tarball, lock = rootfs.entry_paths(tmp_path, spec.key())
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hostname").write_text("base\n")
    with tarfile.open(tarball, "w") as tar:  # as mmdebstrap leaves it (no network needed: already built)
        tar.add(src, arcname=".")
    old = time.time() - 3600
    with rootfs.base_tree(spec, tmp_path) as (base, built):
        assert base == tree and not built
        assert (base / "etc" / "hostname").read_text() == "base\n"
    assert not tarball.exists(), "the tarball is only an intermediate"
    os.utime(lock, (old, old))
    with rootfs.base_tree(spec, tmp_path) as (base, _):
        assert base == tree
    assert lock.stat().st_mtime > old + 60, "using an entry marks it as recently used"


def test_a_lock_whose_file_was_pruned_is_retaken_on_the_new_file(tmp_path: Path) -> None:
    lock = tmp_path / "rootfs-x.lock"
    with rootfs.entry_lock(lock):
        lock.unlink()  # what prune does while it holds the lock
    with rootfs.entry_lock(lock, shared=True):
        assert lock.is_file()
        with pytest.raises(rootfs.CacheBusy), rootfs.entry_lock(lock, wait=False):
            pass
