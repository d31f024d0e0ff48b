"""`kubeplay pack --compression gzip`: a .tar.gz that plain tools unpack, and that verify/extract read by content."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

from kubeplay.bundle.compression import (
    Compression,
    check_level,
    detect_compression,
    gzip_declared_size,
    gzip_header,
    gzip_tar_size,
    strip_archive_suffix,
)
from kubeplay.bundle.extract import extract_bundle, frame_content_size
from kubeplay.bundle.pack import pack_bundle, pack_checked_bundle, unpack_commands
from kubeplay.bundle.parts import open_archive_source
from kubeplay.bundle.verify import verify_bundle
from kubeplay.cli.pack import pack_and_report
from kubeplay.console import Output
from kubeplay.errors import BadInput, BundleError

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bundle_fixture import KUBEADM, STEM, flip_byte, make_bundle, tree_digests

REPO = Path(__file__).resolve().parents[2]
GZ = Compression.GZIP
# pigz as a subprocess when installed, zlib in-process when not (KUBEPLAY_PIGZ=0 forces that)
GZIP_TOOLS = [
    pytest.param("1", id="pigz", marks=pytest.mark.skipif(shutil.which("pigz") is None, reason="pigz not installed")),
    pytest.param("0", id="zlib"),
]


@pytest.fixture(params=GZIP_TOOLS)
def gzip_tool(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("KUBEPLAY_PIGZ", request.param)
    return str(request.param)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle")


def _sh(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _kubeplay(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubeplay", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


# --- format detection and the gzip header (pure data) ------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x28\xb5\x2f\xfd\x04\x58", Compression.ZSTD),
        (b"\x1f\x8b\x08\x00", Compression.GZIP),
        (gzip.compress(b"x"), Compression.GZIP),
        (b"ustar\0", None),
        (b"PK\x03\x04", None),
        (b"\x1f", None),
        (b"", None),
    ],
)
def test_format_is_told_by_magic_bytes(head: bytes, expected: Compression | None) -> None:
    assert detect_compression(head) is expected


@pytest.mark.parametrize(
    ("name", "stem"),
    [("k-1.tar.zst", "k-1"), ("k-1.tar.gz", "k-1"), ("k-1.tgz", "k-1"), ("k-1.bin", "k-1.bin")],
)
def test_archive_suffixes_are_stripped(name: str, stem: str) -> None:
    assert strip_archive_suffix(name) == stem


def test_gzip_header_records_sizes_beyond_4_gib_and_gzip_still_reads_it() -> None:
    big = 5 * (1 << 32) + 12345
    assert gzip_declared_size(gzip_header(big)) == big
    assert gzip_tar_size(gzip_header(big), (big % (1 << 32)).to_bytes(4, "little")) == big
    # ISIZE disagreeing with the header: the header is not trusted
    assert gzip_tar_size(gzip_header(big), (7).to_bytes(4, "little")) is None
    # a gzip from other tools has no size field: unknown, not a guess from ISIZE
    assert gzip_declared_size(gzip.compress(b"data", mtime=0)) is None
    # the extra field is standard RFC 1952: Python's gzip (like gzip, pigz, busybox) skips it
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(b"hello") + deflate.flush()
    member = gzip_header(5) + body + zlib.crc32(b"hello").to_bytes(4, "little") + (5).to_bytes(4, "little")
    assert gzip.decompress(member) == b"hello"


def test_levels_are_checked_per_format() -> None:
    assert check_level(Compression.GZIP, None) == 6
    assert check_level(Compression.ZSTD, None) == 3
    assert check_level(Compression.ZSTD, 19) == 19
    with pytest.raises(BadInput, match="--level 12 is out of range for gzip") as err:
        check_level(Compression.GZIP, 12)
    assert err.value.hint == "gzip levels are 1 to 9"


# --- packing gzip, unpacking with plain tools ------------------------------------------------------------


def test_gzip_bundle_unpacks_with_plain_tar_and_the_printed_command(
    bundle: Path, tmp_path: Path, gzip_tool: str
) -> None:
    out = tmp_path / "out"
    result = pack_checked_bundle(bundle, out, compression=GZ)
    assert result.archive == out / f"{STEM}.tar.gz"
    assert sorted(p.name for p in out.iterdir()) == [f"{STEM}.tar.gz", f"{STEM}.tar.gz.sha256"]
    assert result.archive.read_bytes()[:2] == b"\x1f\x8b"
    listing = subprocess.run(["tar", "-tzf", str(result.archive)], capture_output=True, text=True, check=True)
    assert listing.stdout.split()[:3] == [f"{STEM}/", f"{STEM}/kubeplay.json", f"{STEM}/SHA256SUMS"]
    assert subprocess.run(["gzip", "-t", str(result.archive)], check=False).returncode == 0
    # the operator's side: only the two files, the printed command, coreutils and tar
    site = tmp_path / "site"
    site.mkdir()
    for path in (result.archive, result.sha256_file):
        shutil.copy(path, site)
    (command,) = unpack_commands(result)
    assert command == f"sha256sum -c {STEM}.tar.gz.sha256 && tar -xzf {STEM}.tar.gz"
    run = _sh(command, site)
    assert run.returncode == 0, run.stderr
    assert tree_digests(site / STEM) == tree_digests(bundle)
    assert (site / STEM / KUBEADM).stat().st_mode & 0o111
    # the bundle's own SHA256SUMS holds after a plain unpack
    assert _sh("sha256sum --quiet -c SHA256SUMS", site / STEM).returncode == 0


def test_gzip_packs_to_the_same_bytes_whole_or_split(bundle: Path, tmp_path: Path, gzip_tool: str) -> None:
    first = pack_checked_bundle(bundle, tmp_path / "a", compression=GZ)
    second = pack_checked_bundle(bundle, tmp_path / "b", compression=GZ, split_size=1 << 20)
    again = pack_checked_bundle(bundle, tmp_path / "c", compression=GZ)
    assert first.sha256 == second.sha256 == again.sha256


def test_gzip_split_parts_join_with_cat_and_plain_tar(bundle: Path, tmp_path: Path, gzip_tool: str) -> None:
    out = tmp_path / "media"
    result = pack_checked_bundle(bundle, out, compression=GZ, split_size=128 << 10)
    assert len(result.parts) > 1
    assert result.parts_manifest == out / f"{STEM}.parts.json"
    assert [p.name for p in result.parts] == [f"{STEM}.tar.gz.part{i:03d}" for i in range(len(result.parts))]
    (command,) = unpack_commands(result)
    assert command == f"sha256sum -c {STEM}.parts.sha256 && cat {STEM}.tar.gz.part* | tar -xzf -"
    run = _sh(command, out)
    assert run.returncode == 0, run.stderr
    assert tree_digests(out / STEM) == tree_digests(bundle)


def test_gzip_archive_dir_and_parts_verify_and_extract(bundle: Path, tmp_path: Path, gzip_tool: str) -> None:
    whole = pack_checked_bundle(bundle, tmp_path / "whole", compression=GZ)
    split = pack_checked_bundle(bundle, tmp_path / "split", compression=GZ, split_size=128 << 10)
    assert split.parts_manifest is not None
    for path in (bundle, whole.archive, split.parts_manifest, split.parts[0], split.parts[-1]):
        result = verify_bundle(path)
        assert result.ok, (path, result.report.lines())
    assert verify_bundle(whole.archive).archive_sha256 == whole.sha256
    for i, path in enumerate((whole.archive, split.parts_manifest, split.parts[1])):
        extracted = extract_bundle(path, tmp_path / f"dest{i}")
        assert extracted.root == tmp_path / f"dest{i}" / STEM
        assert tree_digests(extracted.root) == tree_digests(bundle)
        assert extracted.size == whole.content_size  # free space was checked with the exact tar size


def test_exact_tar_size_is_read_from_header_and_trailer(bundle: Path, tmp_path: Path, gzip_tool: str) -> None:
    result = pack_checked_bundle(bundle, tmp_path / "out", compression=GZ, split_size=128 << 10)
    assert frame_content_size(open_archive_source(result.parts[0])) == result.content_size


def test_format_comes_from_content_not_the_name(bundle: Path, tmp_path: Path) -> None:
    gz = pack_checked_bundle(bundle, tmp_path / "out", compression=GZ).archive
    disguised = tmp_path / "disguised" / f"{STEM}.tar.zst"  # a gzip archive under the zstd name
    disguised.parent.mkdir()
    shutil.copy(gz, disguised)
    assert verify_bundle(disguised).ok
    assert tree_digests(extract_bundle(disguised, tmp_path / "dest").root) == tree_digests(bundle)
    zst = pack_checked_bundle(bundle, tmp_path / "zout").archive
    renamed = tmp_path / "renamed" / "bundle.tgz"  # and a zstd archive under a gzip name
    renamed.parent.mkdir()
    shutil.copy(zst, renamed)
    assert tree_digests(extract_bundle(renamed, tmp_path / "dest2").root) == tree_digests(bundle)


def test_archive_from_plain_tar_czf_extracts_with_counted_size(bundle: Path, tmp_path: Path) -> None:
    """A .tar.gz made by hand on the build side (no kubeplay size field) still extracts, checked."""
    plain = tmp_path / f"{STEM}.tar.gz"
    shutil.copytree(bundle, tmp_path / STEM)
    subprocess.run(["tar", "-czf", str(plain), "-C", str(tmp_path), STEM], check=True, timeout=120)
    assert frame_content_size(open_archive_source(plain)) is None
    extracted = extract_bundle(plain, tmp_path / "dest")
    assert tree_digests(extracted.root) == tree_digests(bundle)
    assert extracted.size > 0


@pytest.mark.parametrize("plain_tar", [False, True], ids=["kubeplay-gzip", "tar-czf"])
def test_not_enough_space_for_gzip_is_refused_before_writing(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plain_tar: bool
) -> None:
    if plain_tar:
        archive = tmp_path / f"{STEM}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(bundle, arcname=STEM)
    else:
        archive = pack_checked_bundle(bundle, tmp_path / "out", compression=GZ).archive
    dest = tmp_path / "dest"
    dest.mkdir()
    real = shutil.disk_usage(dest)
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: real._replace(free=1 << 20))
    with pytest.raises(BundleError, match=r"needs .* only 1\.0 MiB free"):
        extract_bundle(archive, dest)
    assert list(dest.iterdir()) == []


# --- tampering -----------------------------------------------------------------------------------------------


def test_flipped_byte_in_gzip_archive_is_named_by_verify_and_extract(
    bundle: Path, tmp_path: Path, gzip_tool: str
) -> None:
    archive = pack_checked_bundle(bundle, tmp_path / "out", compression=GZ).archive
    flip_byte(archive)
    with pytest.raises(BundleError) as err:
        verify_bundle(archive)
    assert archive.name in err.value.message
    dest = tmp_path / "dest"
    with pytest.raises(BundleError) as err:
        extract_bundle(archive, dest)
    assert archive.name in err.value.message
    assert list(dest.iterdir()) == []
    # and plain tools catch it too, with the printed command
    assert _sh(f"sha256sum -c {archive.name}.sha256", archive.parent).returncode != 0


def test_flipped_trailer_byte_without_sidecar_is_caught_by_gzip_crc(bundle: Path, tmp_path: Path) -> None:
    archive = pack_checked_bundle(bundle, tmp_path / "out", compression=GZ).archive
    archive.with_name(archive.name + ".sha256").unlink()
    flip_byte(archive, archive.stat().st_size - 6)  # inside the CRC32: only the check at the end sees it
    with pytest.raises(BundleError) as err:
        verify_bundle(archive)
    assert archive.name in err.value.message


def test_tampered_gzip_part_and_tampered_content_are_named(bundle: Path, tmp_path: Path) -> None:
    split = pack_checked_bundle(bundle, tmp_path / "split", compression=GZ, split_size=128 << 10)
    last = split.parts[-1]
    flip_byte(last, last.stat().st_size - 1)
    with pytest.raises(BundleError, match=last.name):
        extract_bundle(split.parts[0], tmp_path / "bad")
    flip_byte(bundle / KUBEADM)
    unchecked = pack_bundle(bundle, tmp_path / "careless", STEM, compression=GZ)  # sums no longer match
    result = verify_bundle(unchecked.archive)
    assert not result.ok
    assert any(line.startswith(f"changed: {KUBEADM}") for line in result.report.lines())
    with pytest.raises(BundleError, match=KUBEADM):
        extract_bundle(unchecked.archive, tmp_path / "dest")


def test_unpacking_a_truncated_gzip_archive_names_it(bundle: Path, tmp_path: Path) -> None:
    archive = pack_checked_bundle(bundle, tmp_path / "out", compression=GZ).archive
    archive.with_name(archive.name + ".sha256").unlink()
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError) as err:
        extract_bundle(archive, tmp_path / "dest")
    assert archive.name in err.value.message


def test_parts_manifest_of_the_other_format_is_not_mistaken_for_this_archive(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    split = pack_checked_bundle(bundle, out, split_size=128 << 10)  # zstd parts and kubeplay-….parts.json
    assert split.parts_manifest is not None
    with pytest.raises(BadInput, match=f"lists the parts of {STEM}.tar.zst, not of {STEM}.tar.gz"):
        verify_bundle(out / f"{STEM}.tar.gz")
    pack_checked_bundle(bundle, out, compression=GZ)  # an unsplit gzip beside them keeps their manifest
    assert split.parts_manifest.is_file()
    assert verify_bundle(split.parts_manifest).ok
    assert verify_bundle(out / f"{STEM}.tar.gz").ok


# --- the CLI -------------------------------------------------------------------------------------------------


def test_cli_pack_gzip_from_env_prints_commands_that_work(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "media"
    packed = _kubeplay(
        "--json-events", "pack", str(bundle), "-o", str(out), "--split-size", "1M", KUBEPLAY_PACK_COMPRESSION="gzip"
    )
    assert packed.returncode == 0, packed.stderr
    event = json.loads(packed.stdout.splitlines()[-1])
    assert event["compression"] == "gzip"
    assert event["archive"] == str(out / f"{STEM}.tar.gz")
    (command,) = event["unpack"]
    assert f"  {command}\n" in packed.stderr  # printed on one line as it is to be typed
    assert _sh(command, out).returncode == 0
    assert tree_digests(out / STEM) == tree_digests(bundle)
    extracted = _kubeplay("extract", str(out / f"{STEM}.tar.gz.part000"), "-C", str(tmp_path / "site"))
    assert extracted.returncode == 0, extracted.stderr
    verified = _kubeplay("verify", str(out / f"{STEM}.parts.json"))
    assert verified.returncode == 0, verified.stderr
    bad_level = _kubeplay("pack", str(bundle), "-o", str(tmp_path / "x"), "--compression", "gzip", "--level", "12")
    assert bad_level.returncode == 2
    assert "out of range for gzip" in bad_level.stderr


def test_cli_zstd_default_prints_the_zstd_command_and_its_need(bundle: Path, tmp_path: Path) -> None:
    packed = _kubeplay("pack", str(bundle), "-o", str(tmp_path / "out"))
    assert packed.returncode == 0, packed.stderr
    assert f"sha256sum -c {STEM}.tar.zst.sha256 && zstd -dc {STEM}.tar.zst | tar -xf -" in packed.stderr
    assert "--compression gzip" in packed.stderr


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("echo 'pigz: write error' >&2; exit 3", "pigz: write error"),
        ("cat >/dev/null; printf 'not gzip at all'", "unexpected gzip header"),
    ],
    ids=["pigz-fails", "pigz-garbage"],
)
def test_failing_pigz_leaves_no_archive_and_says_why(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, message: str
) -> None:
    fake = tmp_path / "bin" / "pigz"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("KUBEPLAY_PIGZ", "1")
    out = tmp_path / "out"
    with pytest.raises(BundleError, match=message):
        pack_checked_bundle(bundle, out, compression=GZ)
    assert list(out.iterdir()) == []


def test_build_pack_call_writes_gzip_beside_the_bundle(bundle: Path) -> None:
    """`kubeplay build --pack --compression gzip` packs like this."""
    pack_and_report(Output(quiet=True), bundle, None, compression=GZ)
    archive = bundle.parent / f"{STEM}.tar.gz"
    assert (
        _sh(f"sha256sum -c {archive.name}.sha256 && tar -tzf {archive.name} >/dev/null", bundle.parent).returncode == 0
    )
