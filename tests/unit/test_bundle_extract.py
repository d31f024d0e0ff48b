"""Safe extraction: hostile members are refused by name and nothing lands outside the target."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from kubeplay.bundle.extract import MemberChecks, check_member, extract_bundle
from kubeplay.bundle.pack import pack_bundle, pack_checked_bundle
from kubeplay.errors import BadInput, BundleError

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bundle_fixture import (
    KUBEADM,
    STEM,
    add_file,
    add_special,
    flip_byte,
    make_bundle,
    tree_digests,
    write_tar_gz,
    write_tar_zst,
)

TOP = "kubeplay-1.0.0-amd64"


def _dir(tar: tarfile.TarFile, name: str) -> None:
    add_special(tar, name, tarfile.DIRTYPE, mode=0o755)


def _absolute(tar: tarfile.TarFile) -> None:
    _dir(tar, TOP)
    add_file(tar, "/tmp/kubeplay-pwned", b"owned")


def _dotdot(tar: tarfile.TarFile) -> None:
    _dir(tar, TOP)
    add_file(tar, f"{TOP}/../../outside/pwned", b"owned")


def _symlink_absolute(tar: tarfile.TarFile) -> None:
    _dir(tar, TOP)
    add_special(tar, f"{TOP}/etc", tarfile.SYMTYPE, linkname="/etc")


def _symlink_escape_then_write(tar: tarfile.TarFile) -> None:
    _dir(tar, TOP)
    add_special(tar, f"{TOP}/escape", tarfile.SYMTYPE, linkname="../../outside")
    add_file(tar, f"{TOP}/escape/pwned", b"owned")


def _symlink_chain(tar: tarfile.TarFile) -> None:
    # Each link looks harmless lexically; together they resolve above the target.
    _dir(tar, TOP)
    add_special(tar, f"{TOP}/up", tarfile.SYMTYPE, linkname="..")
    add_special(tar, f"{TOP}/up/up2", tarfile.SYMTYPE, linkname="..")
    add_file(tar, f"{TOP}/up/up2/pwned", b"owned")


def _symlink_chain_flat(tar: tarfile.TarFile) -> None:
    # Without a top directory the lexical checks pass; the real-path guard at write time must catch it.
    add_file(tar, "readme", b"x")
    _dir(tar, "d")
    add_special(tar, "d/up", tarfile.SYMTYPE, linkname="..")
    add_special(tar, "d/up/up2", tarfile.SYMTYPE, linkname="..")
    add_file(tar, "d/up/up2/pwned", b"owned")


def _symlink_chain_after_writes(tar: tarfile.TarFile) -> None:
    # Files written into d first (its real path is then remembered); the chain below d is resolved anew.
    add_file(tar, "readme", b"x")
    _dir(tar, "d")
    add_file(tar, "d/one", b"1")
    add_file(tar, "d/two", b"2")
    add_special(tar, "d/up", tarfile.SYMTYPE, linkname="..")
    add_special(tar, "d/up/up2", tarfile.SYMTYPE, linkname="..")
    add_file(tar, "d/up/up2/pwned", b"owned")


def _symlink_to_a_chain(tar: tarfile.TarFile) -> None:
    # up -> "." stays in the bundle; up2 -> "up/.." is the bundle directory by name, its parent on disk.
    _dir(tar, TOP)
    add_special(tar, f"{TOP}/up", tarfile.SYMTYPE, linkname=".")
    add_special(tar, f"{TOP}/up2", tarfile.SYMTYPE, linkname="up/..")


def _symlink_before_its_chain(tar: tarfile.TarFile) -> None:
    # x -> "y/.." is made while y does not exist (it resolves inside then); y -> "." comes after.
    _dir(tar, TOP)
    add_special(tar, f"{TOP}/x", tarfile.SYMTYPE, linkname="y/..")
    add_special(tar, f"{TOP}/y", tarfile.SYMTYPE, linkname=".")


def _hardlink_outside(tar: tarfile.TarFile) -> None:
    _dir(tar, TOP)
    add_special(tar, f"{TOP}/passwd", tarfile.LNKTYPE, linkname="../outside/victim")


def _hardlink_absolute(tar: tarfile.TarFile) -> None:
    _dir(tar, TOP)
    add_special(tar, f"{TOP}/passwd", tarfile.LNKTYPE, linkname="/etc/passwd")


def _device(tar: tarfile.TarFile) -> None:
    _dir(tar, TOP)
    add_special(tar, f"{TOP}/sda", tarfile.BLKTYPE)


def _chardev(tar: tarfile.TarFile) -> None:
    _dir(tar, TOP)
    add_special(tar, f"{TOP}/null", tarfile.CHRTYPE)


def _fifo(tar: tarfile.TarFile) -> None:
    _dir(tar, TOP)
    add_special(tar, f"{TOP}/pipe", tarfile.FIFOTYPE)


def _setuid(tar: tarfile.TarFile) -> None:
    _dir(tar, TOP)
    add_file(tar, f"{TOP}/rootshell", b"#!/bin/sh\n", mode=0o4755)


def _setgid(tar: tarfile.TarFile) -> None:
    _dir(tar, TOP)
    add_file(tar, f"{TOP}/groupshell", b"#!/bin/sh\n", mode=0o2755)


def _duplicate(tar: tarfile.TarFile) -> None:
    _dir(tar, TOP)
    add_special(tar, f"{TOP}/x", tarfile.SYMTYPE, linkname="y")
    add_file(tar, f"{TOP}/x", b"second")


def _outside_top(tar: tarfile.TarFile) -> None:
    _dir(tar, TOP)
    add_file(tar, "other/file", b"x")


HOSTILE: dict[str, tuple[Callable[[tarfile.TarFile], None], str, str]] = {
    "absolute": (_absolute, "/tmp/kubeplay-pwned", "absolute path"),
    "dotdot": (_dotdot, f"{TOP}/../../outside/pwned", "'..'"),
    "symlink-absolute": (_symlink_absolute, f"{TOP}/etc", "symlink to absolute path"),
    "symlink-escape": (_symlink_escape_then_write, f"{TOP}/escape", "points outside"),
    "symlink-chain": (_symlink_chain, f"{TOP}/up", "points outside the bundle directory"),
    "symlink-chain-flat": (_symlink_chain_flat, "d/up/up2", "outside the destination"),
    "symlink-chain-after-writes": (_symlink_chain_after_writes, "d/up/up2", "outside the destination"),
    "symlink-to-a-chain": (_symlink_to_a_chain, f"{TOP}/up2", "outside the destination"),
    "symlink-before-its-chain": (_symlink_before_its_chain, f"{TOP}/x", "outside the destination"),
    "hardlink-outside": (_hardlink_outside, f"{TOP}/passwd", "hardlink"),
    "hardlink-absolute": (_hardlink_absolute, f"{TOP}/passwd", "hardlink to absolute path"),
    "block-device": (_device, f"{TOP}/sda", "device node"),
    "char-device": (_chardev, f"{TOP}/null", "device node"),
    "fifo": (_fifo, f"{TOP}/pipe", "fifo"),
    "setuid": (_setuid, f"{TOP}/rootshell", "setuid"),
    "setgid": (_setgid, f"{TOP}/groupshell", "setgid"),
    "duplicate": (_duplicate, f"{TOP}/x", "twice"),
    "outside-top": (_outside_top, "other/file", "outside the bundle directory"),
}


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("suffix", [".tar.zst", ".tar.gz"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_member_is_refused_by_name_and_nothing_escapes(tmp_path: Path, case: str, suffix: str) -> None:
    build, member, reason = HOSTILE[case]
    write = write_tar_gz if suffix == ".tar.gz" else write_tar_zst
    archive = write(tmp_path / f"{TOP}{suffix}", build)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("original")
    dest = tmp_path / "work" / "dest"
    dest.mkdir(parents=True)
    before = _snapshot(tmp_path)
    with pytest.raises(BundleError) as err:
        extract_bundle(archive, dest)
    assert repr(member) in err.value.message
    assert reason in err.value.message
    assert _snapshot(tmp_path) == before  # not one file created anywhere, the target included
    assert (outside / "victim").read_text() == "original"
    assert not Path("/tmp/kubeplay-pwned").exists()


def test_symlink_inside_the_target_passes_member_checks() -> None:
    checks = MemberChecks()
    info = tarfile.TarInfo(f"{TOP}/a/link")
    info.type, info.linkname = tarfile.SYMTYPE, "../b/file"
    assert check_member(info, checks) == f"{TOP}/a/link"


def test_leading_dot_slash_members_are_accepted() -> None:
    info = tarfile.TarInfo("./kubeplay.json")
    info.size = 2
    assert check_member(info, MemberChecks()) == "kubeplay.json"


@pytest.fixture
def packed(tmp_path: Path) -> Path:
    bundle = make_bundle(tmp_path / "bundle")
    return pack_checked_bundle(bundle, tmp_path / "out").archive


def test_extracted_bundle_keeps_modes_without_special_bits(packed: Path, tmp_path: Path) -> None:
    result = extract_bundle(packed, tmp_path / "dest")
    kubeadm = result.root / KUBEADM
    assert stat.S_IMODE(kubeadm.stat().st_mode) == 0o755
    assert stat.S_IMODE((result.root / "kubeplay.json").stat().st_mode) == 0o644
    assert stat.S_IMODE(result.root.stat().st_mode) == 0o755


def test_existing_target_is_bad_input_and_untouched(packed: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    (dest / STEM).mkdir(parents=True)
    (dest / STEM / "mine").write_text("keep")
    with pytest.raises(BadInput, match="already exists"):
        extract_bundle(packed, dest)
    assert _snapshot(dest) == {STEM, f"{STEM}/mine"}


def test_not_enough_space_is_refused_before_writing(
    packed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    real = shutil.disk_usage(dest)
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: real._replace(free=1 << 20))
    with pytest.raises(BundleError, match=r"needs .* only 1\.0 MiB free"):
        extract_bundle(packed, dest)
    assert list(dest.iterdir()) == []


def test_tampered_file_inside_archive_is_named_and_target_not_created(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    flip_byte(bundle / "kubespray/README.md", 0)
    # pack_bundle (unchecked) writes what a careless or hostile packer would: sums no longer match
    archive = pack_bundle(bundle, tmp_path / "out", STEM).archive
    dest = tmp_path / "dest"
    with pytest.raises(BundleError) as err:
        extract_bundle(archive, dest)
    assert "kubespray/README.md" in err.value.message
    assert list(dest.iterdir()) == []


def test_flipped_byte_in_compressed_archive_is_refused(packed: Path, tmp_path: Path) -> None:
    flip_byte(packed)
    dest = tmp_path / "dest"
    with pytest.raises(BundleError) as err:
        extract_bundle(packed, dest)
    assert packed.name in err.value.message
    assert list(dest.iterdir()) == []


def test_extract_from_split_parts_and_a_tampered_part_is_named(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    result = pack_checked_bundle(bundle, tmp_path / "out", split_size=128 << 10)
    assert result.parts_manifest is not None
    extracted = extract_bundle(result.parts[1], tmp_path / "ok")
    assert tree_digests(extracted.root) == tree_digests(bundle)
    last = result.parts[-1]
    flip_byte(last, last.stat().st_size - 1)  # inside the frame's checksum trailer: only the digest sees it
    with pytest.raises(BundleError) as err:
        extract_bundle(result.parts_manifest, tmp_path / "bad")
    assert last.name in err.value.message
    assert list((tmp_path / "bad").iterdir()) == []


@pytest.mark.parametrize(("index", "where"), [(1, "middle"), (0, 4)])
def test_a_damaged_part_is_named(tmp_path: Path, index: int, where: str | int) -> None:
    """Mid-data, only the digests see it; in the zstd frame header (byte 4), zstd fails first and the rest
    of the parts is still read so the message names the part to copy again."""
    bundle = make_bundle(tmp_path / "bundle")
    result = pack_checked_bundle(bundle, tmp_path / "out", split_size=128 << 10)
    assert len(result.parts) >= 3 and result.parts_manifest is not None
    part = result.parts[index]
    flip_byte(part, part.stat().st_size // 2 if where == "middle" else int(where))
    with pytest.raises(BundleError) as err:
        extract_bundle(result.parts_manifest, tmp_path / "bad")
    assert f"{part.name}: sha256 does not match the parts manifest" in err.value.message
    if where != "middle":
        assert isinstance(err.value.__context__, zstandard.ZstdError)
    assert list((tmp_path / "bad").iterdir()) == []


def test_missing_part_is_named(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    result = pack_checked_bundle(bundle, tmp_path / "out", split_size=128 << 10)
    result.parts[1].unlink()
    with pytest.raises(BundleError, match=result.parts[1].name):
        extract_bundle(result.parts[0], tmp_path / "dest")


def test_not_an_archive_is_bad_input(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.zst"
    junk.write_bytes(os.urandom(64))
    with pytest.raises(BadInput):
        extract_bundle(junk, tmp_path / "dest")
    with pytest.raises(BadInput):
        extract_bundle(tmp_path / "absent.tar.zst", tmp_path / "dest")


def test_whole_archive_digest_from_sidecar_is_checked(packed: Path, tmp_path: Path) -> None:
    sidecar = packed.with_name(packed.name + ".sha256")
    sidecar.write_text(f"{hashlib.sha256(b'other').hexdigest()}  {packed.name}\n")
    with pytest.raises(BundleError, match="does not match"):
        extract_bundle(packed, tmp_path / "dest")


def test_a_member_with_a_negative_size_is_refused(tmp_path: Path) -> None:
    """GNU base-256 numbers can encode a negative size; such a header is named, never followed."""

    def build(tar: tarfile.TarFile) -> None:
        add_special(tar, "bundle", tarfile.DIRTYPE, mode=0o755)
        add_file(tar, "bundle/a", b"first\n")
        header = bytearray(tarfile.TarInfo("bundle/b").tobuf(tarfile.USTAR_FORMAT))
        header[124:136] = b"\xff" * 12  # size field, base-256: -1
        header[148:156] = b" " * 8
        header[148:156] = b"%06o\0 " % sum(header)
        assert tar.fileobj is not None
        tar.fileobj.write(bytes(header))
        tar.offset += len(header)

    archive = write_tar_zst(tmp_path / "neg.tar.zst", build)
    with pytest.raises(BundleError) as err:
        extract_bundle(archive, tmp_path / "dest")
    assert "'bundle/b'" in err.value.message and "negative size -1" in err.value.message
    assert list((tmp_path / "dest").iterdir()) == []
