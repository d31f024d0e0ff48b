"""Read a packed bundle safely: member checks, one streaming pass, and extraction that cannot escape.

Every member is checked before anything is written (`check_member`): absolute names, `..`, links
that point outside the target, device nodes and fifos, setuid/setgid bits and duplicate names are
refused with the member named. Extraction then writes into a staging directory inside the target with
`O_NOFOLLOW | O_EXCL`, re-checking the real path of every parent (earlier members may be symlinks), and
with tarfile's own 'data' filter as a second guard for links. Files are hashed as they are written, so
the same pass proves the content matches the bundle's SHA256SUMS before the staging directory is renamed.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import shutil
import stat
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import zstandard

from kubeplay.bundle.compression import (
    DECOMPRESS_ERRORS,
    Compression,
    decompressing_reader,
    detect_compression,
    gzip_tar_size,
    strip_archive_suffix,
)
from kubeplay.bundle.integrity import IntegrityReport, check_bundle_digests
from kubeplay.bundle.parts import ArchiveSource, open_archive_source
from kubeplay.bundle.staging import CHUNK, PENDING, StagedMember, StagingWriter, refuse, within
from kubeplay.console import human_bytes
from kubeplay.errors import BadInput, BundleError

# Slack over the tar size for file-system blocks of many small files and directories.
SPACE_MARGIN = 64 << 20


_refuse = refuse


def normalize_member_name(name: str) -> str:
    """The member's path with `.` parts and trailing slashes dropped; raise BundleError when unsafe."""
    if "\0" in name:
        raise _refuse(name, "name contains a NUL byte")
    if name.startswith("/"):
        raise _refuse(name, "absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(name, "path contains '..'")
    return "/".join(parts)


@dataclass
class MemberChecks:
    """What earlier members established: names seen, which are regular files, which are symlinks."""

    seen: set[str] = field(default_factory=set)
    regular: set[str] = field(default_factory=set)


def check_member(info: tarfile.TarInfo, checks: MemberChecks) -> str:
    """Return the member's normalised name, or raise BundleError naming it and what is wrong."""
    name = normalize_member_name(info.name)
    label = info.name
    if info.ischr() or info.isblk():
        raise _refuse(label, "device node")
    if info.isfifo():
        raise _refuse(label, "fifo")
    if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
        raise _refuse(label, f"unsupported member type {info.type!r}")
    if info.size < 0:
        raise _refuse(label, f"negative size {info.size}")
    if info.mode & (stat.S_ISUID | stat.S_ISGID):
        raise _refuse(label, "setuid or setgid bit set")
    if name in checks.seen and not (info.isdir() and name == ""):
        raise _refuse(label, "appears twice in the archive")
    if info.issym():
        if info.linkname.startswith("/"):
            raise _refuse(label, f"symlink to absolute path {info.linkname!r}")
        target = posixpath.normpath(posixpath.join(posixpath.dirname(name), info.linkname))
        if target == ".." or target.startswith("../"):
            raise _refuse(label, f"symlink {info.linkname!r} points outside the target directory")
    if info.islnk():
        if info.linkname.startswith("/"):
            raise _refuse(label, f"hardlink to absolute path {info.linkname!r}")
        try:
            target = normalize_member_name(info.linkname)
        except BundleError:
            raise _refuse(label, f"hardlink to {info.linkname!r}, outside the target directory") from None
        if target not in checks.regular:
            raise _refuse(label, f"hardlink to {info.linkname!r}, which is not an earlier regular file in the archive")
    checks.seen.add(name)
    if info.isreg():
        checks.regular.add(name)
    return name


@dataclass
class ArchiveEntry:
    """A checked member handed to a visitor: its name in the archive and its path below the bundle root."""

    info: tarfile.TarInfo
    name: str
    relpath: str
    link_relpath: str | None = None


# Called with each entry and, for regular files, a reader over its bytes; returns the content's sha256.
Visitor = Callable[[ArchiveEntry, IO[bytes] | None], str | None]


@dataclass
class ScanResult:
    """The outcome of one pass over an archive: per-file digests below the bundle root, and the top dir."""

    top: str | None
    digests: dict[str, str]
    symlinks: dict[str, str]
    entries: int


def source_compression(source: ArchiveSource) -> Compression:
    """The archive's format from its first bytes (not its name); raise BadInput for anything else."""
    with source.files[0].open("rb") as fh:
        head = fh.read(4)
    found = detect_compression(head)
    if found is None:
        raise BadInput(
            f"{source.files[0]}: neither a zstd nor a gzip archive (starts with {head.hex() or 'nothing'})",
            hint="pass a bundle directory, a .tar.zst or .tar.gz from `kubeplay pack`, or its .parts.json",
        )
    return found


def frame_content_size(source: ArchiveSource) -> int | None:
    """The exact tar size the archive header records, or None when the writer did not record it.

    zstd: the frame's content size. gzip: kubeplay's header field, when it agrees with the ISIZE
    trailer (size mod 2^32) at the end of the last part; archives from other gzip tools have none.
    """
    compression = source_compression(source)
    with source.files[0].open("rb") as fh:
        head = fh.read(64)  # the largest zstd frame header is 18 bytes; kubeplay's gzip header 24
    if compression is Compression.GZIP:
        with source.files[-1].open("rb") as fh:
            fh.seek(max(0, source.files[-1].stat().st_size - 4))
            return gzip_tar_size(head, fh.read(4))
    try:
        size = zstandard.frame_content_size(head)
    except zstandard.ZstdError as exc:
        raise BadInput(
            f"{source.files[0]}: not a zstd archive ({exc})", hint="pass a bundle directory, .tar.zst or .parts.json"
        ) from exc
    return None if size < 0 else int(size)


def hash_stream(fh: IO[bytes], sink: Callable[[bytes], object] | None = None) -> str:
    """Read `fh` to its end in chunks, passing each to `sink`; return the sha256 of all of it."""
    digest = hashlib.sha256()
    while True:
        chunk = fh.read(CHUNK)
        if not chunk:
            break
        digest.update(chunk)
        if sink is not None:
            sink(chunk)
    return digest.hexdigest()


class ForwardReader(io.RawIOBase):
    """A stream (the decompressor) that tarfile's random-access mode can read in one pass: `seek` ahead
    reads and discards, `seek` back raises tarfile.ReadError. tarfile's `r:` mode only seeks forward when members are read
    in order, and reads member data straight from here; its stream mode (`r|`) copies every chunk through
    its own buffer three more times (a third of extraction's main-thread time)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset + (self.position if whence == io.SEEK_CUR else 0)
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target < self.position:
            # Only a malformed header (e.g. a negative size) points back: a tar error names the member.
            raise tarfile.ReadError(f"member data would start at {target}, before the stream's {self.position}")
        while self.position < target:
            skipped = self.raw.read(min(target - self.position, CHUNK))
            if not skipped:
                break
            self.position += len(skipped)
        return self.position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n: int = self.raw.readinto(buffer)  # type: ignore[attr-defined]  # zstd's and gzip's readers have it
        self.position += n
        return n


def scan_archive(source: ArchiveSource, visit: Visitor) -> ScanResult:
    """Stream the archive once, checking every member and calling `visit`; raise BundleError on anything bad."""
    checks = MemberChecks()
    top: str | None = None
    digests: dict[str, str] = {}
    symlinks: dict[str, str] = {}
    entries = 0
    current = "(archive header)"
    compression = source_compression(source)
    raw = source.open()
    try:
        reader = decompressing_reader(compression, raw)
        # Members are visited in archive order and a hardlink's target is never re-read: forward-only holds.
        with tarfile.open(fileobj=io.BufferedReader(ForwardReader(reader), CHUNK), mode="r:") as tar:
            for info in tar:
                current = info.name
                name = check_member(info, checks)
                if entries == 0 and info.isdir() and name and "/" not in name:
                    top = name
                if top is None:
                    relpath = name
                elif name == top or name.startswith(top + "/"):
                    relpath = name[len(top) + 1 :]
                else:
                    raise _refuse(info.name, f"outside the bundle directory {top!r}")
                if info.issym() and top is not None:
                    target = posixpath.normpath(posixpath.join(posixpath.dirname(name), info.linkname))
                    if not (target == top or target.startswith(top + "/")):
                        raise _refuse(info.name, f"symlink {info.linkname!r} points outside the bundle directory")
                linked = None
                if info.islnk():
                    target = normalize_member_name(info.linkname)
                    linked = target[len(top) + 1 :] if top else target
                entry = ArchiveEntry(info, name, relpath, linked)
                if info.isreg():
                    data = tar.extractfile(info)
                    assert data is not None
                    digest = visit(entry, data)
                    digests[relpath] = digest if digest is not None else hash_stream(data)
                else:
                    visit(entry, None)
                    if linked is not None:
                        digests[relpath] = digests[linked]
                    elif info.issym():
                        symlinks[relpath] = info.linkname
                entries += 1
            current = "(end of archive)"
        # Read to the real end so the parts and the whole archive are checked against their digests.
        while reader.read(CHUNK):
            pass
        while raw.read(CHUNK):
            pass
    except DECOMPRESS_ERRORS as exc:
        # Reading the rest checks the parts' digests: a damaged part is then named (which file to copy again).
        while raw.read(CHUNK):
            pass
        raise BundleError(
            f"{source.label}: corrupt {compression} data at member {current!r}: {exc}",
            hint="the archive was changed or damaged in transit; copy it again from the build machine",
        ) from exc
    except tarfile.TarError as exc:
        raise BundleError(f"{source.label}: not a readable tar archive at member {current!r}: {exc}") from exc
    finally:
        raw.close()
    if entries == 0:
        raise BundleError(f"{source.label}: the archive holds no files")
    return ScanResult(top=top, digests=digests, symlinks=symlinks, entries=entries)


def check_symlinks_inside(bundle: Path, scan: ScanResult) -> None:
    """Every symlink, as extracted, resolves inside the bundle directory; raise BundleError naming it.

    Each link passed the checks by name and tarfile's filter when it was made, but a link can be made
    before the links it goes through (`x -> y/..`, then `y -> .`), so only the finished tree says where
    it leads."""
    root = os.path.realpath(bundle)
    for relpath in scan.symlinks:
        if not within(os.path.realpath(bundle / relpath), root):
            name = f"{scan.top}/{relpath}" if scan.top else relpath
            raise _refuse(name, "symlink resolves outside the destination bundle directory (through other links)")


@dataclass
class ExtractResult:
    """Where the bundle landed and what the pass found."""

    root: Path
    files: int
    size: int
    report: IntegrityReport


def check_free_space(source: ArchiveSource, dest: Path) -> int:
    """Return the bytes extraction needs; raise BundleError when `dest`'s file system has less free.

    The size comes from the archive header (exact); an archive without one (a gzip not written by
    kubeplay, whose ISIZE is only mod 2^32) is read once to add up its members' sizes (exact, slower).
    """
    needed = frame_content_size(source)
    if needed is None:
        sizes: list[int] = []

        def add_size(entry: ArchiveEntry, data: IO[bytes] | None) -> None:
            sizes.append(entry.info.size)

        scan_archive(source, add_size)
        needed = sum(sizes)
    free = shutil.disk_usage(dest).free
    if needed + SPACE_MARGIN > free:
        raise BundleError(
            f"extracting {source.archive_name} needs {human_bytes(needed + SPACE_MARGIN)}, "
            f"only {human_bytes(free)} free on {dest}",
            hint="free space there or extract somewhere else",
        )
    return needed


def bundle_dir_name(source: ArchiveSource) -> str:
    return strip_archive_suffix(source.archive_name)


def extract_bundle(
    archive: Path,
    dest: Path,
    *,
    check_digests: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExtractResult:
    """Extract a packed bundle (archive or parts) into `dest/<bundle dir>`; return where it is.

    Raises BadInput for a missing archive or an existing target directory, and BundleError for an
    unsafe member, corrupt data, too little space or (with `check_digests`) content that fails SHA256SUMS.
    The target appears only after everything passed; on failure nothing stays behind.
    """
    source = open_archive_source(archive)
    dest.mkdir(parents=True, exist_ok=True)
    expected = dest / bundle_dir_name(source)
    if expected.exists() or expected.is_symlink():
        raise BadInput(f"{expected}: already exists", hint="remove it or extract into another directory")
    needed = check_free_space(source, dest)
    staging = dest / f".kubeplay-extract-{uuid.uuid4().hex[:12]}"
    staging.mkdir(mode=0o700)
    try:
        writer = StagingWriter(staging, needed, on_progress)

        def stage(entry: ArchiveEntry, data: IO[bytes] | None) -> str | None:
            writer.add(StagedMember(entry.info, entry.name, entry.relpath, entry.link_relpath), data)
            return PENDING if data is not None else None

        try:
            scan = scan_archive(source, stage)
            writer.finish()
        finally:
            writer.abandon()
        scan.digests.update(writer.digests)
        bundle = staging / scan.top if scan.top else staging
        check_symlinks_inside(bundle, scan)
        report = check_bundle_digests(bundle, scan.digests, scan.symlinks)
        if check_digests and not report.ok:
            raise BundleError(
                f"{source.label}: content does not match the bundle's SHA256SUMS:\n{report.render()}",
                hint="the bundle was altered before it was packed; rebuild it or copy a good archive",
            )
        final = dest / (scan.top or bundle_dir_name(source))
        if final.exists() or final.is_symlink():
            raise BadInput(f"{final}: already exists", hint="remove it or extract into another directory")
        os.chmod(bundle, 0o755)  # noqa: S103 - the staging dir was 0700; nginx serves the bundle
        os.rename(bundle, final)
    except OSError as exc:
        raise BundleError(f"extracting into {dest}: {exc}", hint="check free space and permissions there") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExtractResult(root=final, files=len(scan.digests), size=needed, report=report)
