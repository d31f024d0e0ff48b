"""Stream a bundle directory into `kubeplay-<kube_version>-<arches>.tar.zst` (or `.tar.gz`), optionally split.

No temporary copy is made: tar headers and file bytes go straight into the compressor (a multi-threaded
zstd frame, or gzip through pigz or zlib) and from there into the output file (or the current part), so
the disk needed is the bundle plus the archive. Members are written in a fixed order (manifest files
first, then depth-first by name) with normalised owners and modes, and the zstd frame or kubeplay's gzip
header records the exact tar size so extraction can check free space first.
Every file is hashed while it streams, so packing also proves the bundle matches its SHA256SUMS.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import zstandard

from kubeplay.bundle.compression import SUFFIXES, ByteWriter, Compression, check_level, compressing_writer
from kubeplay.bundle.delta import delta_suffix, read_delta
from kubeplay.bundle.integrity import compare_digests
from kubeplay.bundle.manifest import (
    BUILD_STATE_DIR,
    MANIFEST_NAME,
    PART_SUFFIX,
    SUMS_NAME,
    read_manifest,
    read_sha256sums,
)
from kubeplay.bundle.parts import PartEntry, PartsManifest, load_parts_manifest, parts_manifest_name, sha256sum_line
from kubeplay.errors import BadInput, BundleError, Interrupted
from kubeplay.state import atomic_write

# Read first when streaming: a reader (verify, extract) meets the digests before the files they cover.
LEADING_FILES = ("kubeplay.json", "SHA256SUMS", "SHA256SUMS.sig", "delta.json")
CHUNK = 1 << 20


def archive_stem(kube_version: str, arches: list[str]) -> str:
    """The bundle's file name without suffix, e.g. `kubeplay-1.33.4-amd64-arm64`."""
    version = kube_version.removeprefix("v")
    return f"kubeplay-{version}-{'-'.join(arches)}"


@dataclass(frozen=True)
class PackMember:
    """One tar member: where its bytes come from and the header that precedes them."""

    arcname: str
    relpath: str
    source: Path
    info: tarfile.TarInfo
    header: bytes

    @property
    def stream_size(self) -> int:
        return len(self.header) + _padded(self.info.size if self.info.isreg() else 0)


@dataclass
class PackResult:
    """What `pack_bundle` wrote: the archive (or its parts), sidecars, sizes and per-file digests."""

    archive: Path
    sha256_file: Path
    parts_manifest: Path | None
    parts: list[Path]
    sha256: str
    compressed_size: int
    content_size: int
    files: int
    compression: Compression = Compression.ZSTD
    file_digests: dict[str, str] = field(default_factory=dict)


def _padded(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _scan(directory: Path, relative: str, top_level: bool) -> Iterator[tuple[str, os.DirEntry[str]]]:
    entries = sorted(os.scandir(directory), key=lambda e: e.name)
    if top_level:
        entries.sort(key=lambda e: LEADING_FILES.index(e.name) if e.name in LEADING_FILES else len(LEADING_FILES))
    for entry in entries:
        rel = f"{relative}/{entry.name}" if relative else entry.name
        if top_level and entry.name == BUILD_STATE_DIR:
            continue  # the build's resume state and caches stay on the build machine
        if entry.name.endswith(PART_SUFFIX) and entry.is_file(follow_symlinks=False):
            continue  # an unfinished download is not part of the bundle
        yield rel, entry
        if entry.is_dir(follow_symlinks=False):
            yield from _scan(Path(entry.path), rel, top_level=False)


def plan_members(bundle_dir: Path, top: str) -> list[PackMember]:
    """The tar members for `bundle_dir` under directory `top`, in archive order; raise BundleError on odd files."""
    members: list[PackMember] = []
    seen_inodes: dict[tuple[int, int], str] = {}
    root = tarfile.TarInfo(top)
    root.type, root.mode, root.mtime = tarfile.DIRTYPE, 0o755, int(bundle_dir.stat().st_mtime)
    members.append(_member(top, "", bundle_dir, root))
    for rel, entry in _scan(bundle_dir, "", top_level=True):
        st = entry.stat(follow_symlinks=False)
        info = tarfile.TarInfo(f"{top}/{rel}")
        info.mtime = int(st.st_mtime)
        if stat.S_ISDIR(st.st_mode):
            info.type, info.mode = tarfile.DIRTYPE, 0o755
        elif stat.S_ISLNK(st.st_mode):
            info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, os.readlink(entry.path)
        elif stat.S_ISREG(st.st_mode):
            info.mode = 0o755 if st.st_mode & 0o111 else 0o644
            first = seen_inodes.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
            if first is not None:
                # A second name for the same inode (the store hard-links blobs): carry it once.
                info.type, info.linkname = tarfile.LNKTYPE, first
            else:
                info.type, info.size = tarfile.REGTYPE, st.st_size
                seen_inodes[(st.st_dev, st.st_ino)] = info.name
        else:
            raise BundleError(
                f"{entry.path}: not a regular file, directory or symlink",
                hint="remove sockets, fifos and device nodes from the bundle directory",
            )
        members.append(_member(info.name, rel, Path(entry.path), info))
    return members


def _member(arcname: str, rel: str, source: Path, info: tarfile.TarInfo) -> PackMember:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    return PackMember(arcname, rel, source, info, header)


def tar_stream_size(members: list[PackMember]) -> int:
    """Exact size of the uncompressed tar stream: members, two zero blocks, padded to a full record."""
    total = sum(m.stream_size for m in members) + 2 * tarfile.BLOCKSIZE
    return -(-total // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


class _ArchiveSink:
    """Receives compressed bytes; writes one file or rotates numbered parts, hashing as it goes."""

    def __init__(self, out_dir: Path, archive_name: str, split_size: int | None) -> None:
        self.out_dir = out_dir
        self.archive_name = archive_name
        self.split_size = split_size
        self.whole = hashlib.sha256()
        self.size = 0
        self.finished_parts: list[PartEntry] = []
        self.temp_files: list[Path] = []
        self._file: BinaryIO | None = None
        self._part_hash = hashlib.sha256()
        self._part_size = 0

    def _final_name(self, index: int) -> str:
        return self.archive_name if self.split_size is None else f"{self.archive_name}.part{index:03d}"

    def _open_next(self) -> None:
        tmp = self.out_dir / f".{self._final_name(len(self.temp_files))}.tmp"
        self.temp_files.append(tmp)
        self._file = tmp.open("wb")
        self._part_hash = hashlib.sha256()
        self._part_size = 0

    def _close_current(self) -> None:
        if self._file is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        name = self._final_name(len(self.temp_files) - 1)
        self.finished_parts.append(PartEntry(name=name, size=self._part_size, sha256=self._part_hash.hexdigest()))

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        while view:
            if self._file is None:
                self._open_next()
            room = len(view) if self.split_size is None else self.split_size - self._part_size
            chunk = view[:room]
            assert self._file is not None
            self._file.write(chunk)
            self._part_hash.update(chunk)
            self.whole.update(chunk)
            self._part_size += len(chunk)
            self.size += len(chunk)
            view = view[room:]
            if self.split_size is not None and self._part_size >= self.split_size:
                self._close_current()
        return len(data)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def commit(self) -> list[Path]:
        """Close the last file and rename every temp file to its final name; return the final paths."""
        if self._file is None and not self.temp_files:
            self._open_next()
        self._close_current()
        finals = []
        for tmp, part in zip(self.temp_files, self.finished_parts, strict=True):
            final = self.out_dir / part.name
            os.replace(tmp, final)
            finals.append(final)
        return finals

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        for tmp in self.temp_files:
            tmp.unlink(missing_ok=True)


def _stream_member(member: PackMember, writer: ByteWriter, buf: bytearray) -> str | None:
    """Write one member's header and bytes; return the sha256 of a regular file's content."""
    writer.write(member.header)
    if not member.info.isreg():
        return None
    digest = hashlib.sha256()
    remaining = member.info.size
    view = memoryview(buf)
    with member.source.open("rb") as fh:
        while remaining:
            n = fh.readinto(view[: min(len(buf), remaining)])
            if not n:
                break
            writer.write(view[:n])
            digest.update(view[:n])
            remaining -= n
        if remaining or fh.read(1):
            raise BundleError(
                f"{member.source}: changed size while packing",
                hint="nothing may write into the bundle directory while it is packed; run pack again",
            )
    padding = _padded(member.info.size) - member.info.size
    if padding:
        writer.write(b"\0" * padding)
    return digest.hexdigest()


def _parts_sums_path(out_dir: Path, archive_name: str) -> Path:
    return out_dir / parts_manifest_name(archive_name).replace(".parts.json", ".parts.sha256")


def _remove_parts_manifest_of(out_dir: Path, archive_name: str) -> None:
    """Drop a parts manifest left from splitting this archive before; one for the other format stays."""
    path = out_dir / parts_manifest_name(archive_name)
    if not path.is_file():
        return
    try:
        own = load_parts_manifest(path).archive == archive_name
    except BundleError:
        own = True  # unreadable: it describes nothing that could still be joined
    if own:
        path.unlink()
        _parts_sums_path(out_dir, archive_name).unlink(missing_ok=True)


def _remove_stale_parts(out_dir: Path, archive_name: str, keep: set[str]) -> None:
    for old in out_dir.glob(f"{archive_name}.part[0-9][0-9][0-9]*"):
        if old.name not in keep:
            old.unlink()


def _check_directories(bundle_dir: Path, out_dir: Path) -> None:
    if not bundle_dir.is_dir():
        raise BadInput(f"{bundle_dir}: not a directory", hint="pass the bundle directory that `kubeplay build` wrote")
    if out_dir.resolve().is_relative_to(bundle_dir.resolve()):
        raise BadInput(
            f"{out_dir}: inside the bundle directory", hint="write the archive next to the bundle, not in it"
        )


def _stream_members(
    members: list[PackMember], writer: ByteWriter, content_size: int, on_progress: Callable[[int, int], None] | None
) -> tuple[dict[str, str], dict[str, str]]:
    """Write every member and the tar trailer; return each file's sha256 and each symlink's target by path."""
    digests: dict[str, str] = {}
    by_arcname: dict[str, str] = {}
    symlinks: dict[str, str] = {}
    buf = bytearray(CHUNK)
    written = 0
    for member in members:
        digest = _stream_member(member, writer, buf)
        if digest is not None:
            digests[member.relpath] = digest
            by_arcname[member.arcname] = digest
        elif member.info.islnk():
            digests[member.relpath] = by_arcname[member.info.linkname]
        elif member.info.issym():
            symlinks[member.relpath] = member.info.linkname
        written += member.stream_size
        if on_progress is not None:
            on_progress(written, content_size)
    writer.write(b"\0" * (content_size - written))
    return digests, symlinks


def _write_sidecars(
    out_dir: Path, archive_name: str, sha256: str, sink: _ArchiveSink, finals: list[Path], split: bool
) -> tuple[Path | None, Path]:
    """The archive's .sha256 (and for parts their manifest and .parts.sha256); leftovers of earlier packs go.

    Returns the parts manifest (None unsplit) and the .sha256 file.
    """
    parts_manifest: Path | None = None
    if split:
        manifest = PartsManifest(archive=archive_name, size=sink.size, sha256=sha256, parts=sink.finished_parts)
        parts_manifest = out_dir / parts_manifest_name(archive_name)
        atomic_write(parts_manifest, (manifest.model_dump_json(indent=2) + "\n").encode())
        # The same digests for plain tools: `sha256sum -c <stem>.parts.sha256` checks every part.
        lines = "".join(sha256sum_line(p.sha256, p.name) for p in sink.finished_parts)
        atomic_write(_parts_sums_path(out_dir, archive_name), lines.encode())
        # an older unsplit archive of the same name would contradict the parts
        (out_dir / archive_name).unlink(missing_ok=True)
    else:
        _remove_parts_manifest_of(out_dir, archive_name)
    _remove_stale_parts(out_dir, archive_name, {p.name for p in finals})
    sha256_file = out_dir / (archive_name + ".sha256")
    atomic_write(sha256_file, sha256sum_line(sha256, archive_name).encode())
    return parts_manifest, sha256_file


def pack_bundle(
    bundle_dir: Path,
    out_dir: Path,
    stem: str,
    *,
    split_size: int | None = None,
    compression: Compression = Compression.ZSTD,
    level: int | None = None,
    threads: int = -1,
    check_digests: Callable[[Mapping[str, str], Mapping[str, str]], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> PackResult:
    """Pack `bundle_dir` as `<out_dir>/<stem>.tar.zst` or `.tar.gz` (or parts); return what was written.

    `check_digests`, when given, is called with every file's sha256 and every symlink's target before
    the output is renamed into place; it raises to abandon the archive (see `pack_checked_bundle`).
    `on_progress(done, total)` reports uncompressed bytes.
    Raises BadInput for a missing directory and BundleError when the bundle cannot be packed.

    Phases: list the members, stream them through the compressor into the archive (or parts) while
    hashing every file, let `check_digests` judge, rename into place, write the sidecar digest files.
    """
    _check_directories(bundle_dir, out_dir)
    level = check_level(compression, level)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive_name = stem + SUFFIXES[compression]
    members = plan_members(bundle_dir, stem)
    content_size = tar_stream_size(members)
    sink = _ArchiveSink(out_dir, archive_name, split_size)
    try:
        with compressing_writer(compression, sink, content_size, level, threads) as writer:
            digests, symlinks = _stream_members(members, writer, content_size, on_progress)
        if check_digests is not None:
            check_digests(digests, symlinks)
        finals = sink.commit()
    except zstandard.ZstdError as exc:
        sink.abort()
        raise BundleError(f"{bundle_dir}: compression failed: {exc}", hint="the bundle changed while packing?") from exc
    except OSError as exc:
        sink.abort()
        raise BundleError(
            f"writing {out_dir / archive_name}: {exc.strerror or exc}", hint="free space in the output directory"
        ) from exc
    except KeyboardInterrupt as exc:
        sink.abort()
        raise Interrupted(
            f"packing {out_dir / archive_name} interrupted: the unfinished archive was removed, the bundle is unchanged",
            hint="run the same command again to pack it",
        ) from exc
    except BaseException:
        sink.abort()
        raise
    sha256 = sink.whole.hexdigest()
    split = split_size is not None
    parts_manifest, sha256_file = _write_sidecars(out_dir, archive_name, sha256, sink, finals, split)
    return PackResult(
        archive=out_dir / archive_name,
        sha256_file=sha256_file,
        parts_manifest=parts_manifest,
        parts=finals if split else [],
        sha256=sha256,
        compressed_size=sink.size,
        content_size=content_size,
        files=len(digests),
        compression=compression,
        file_digests=digests,
    )


def pack_checked_bundle(
    bundle_dir: Path,
    out_dir: Path,
    *,
    split_size: int | None = None,
    compression: Compression = Compression.ZSTD,
    level: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> PackResult:
    """Pack a built bundle under its canonical name, refusing it when a file fails SHA256SUMS or kubeplay.json.

    The name comes from kubeplay.json (`kubeplay-<kube_version>-<arches>.tar.zst` or `.tar.gz`; a delta's adds
    `-delta-<base tag>`, so it never takes the full bundle's name). Every file is hashed
    while it streams, so this costs no extra read; on a mismatch no archive is left behind and BundleError
    lists the files by path.
    """
    if not bundle_dir.is_dir():
        raise BadInput(f"{bundle_dir}: not a directory", hint="pass the bundle directory that `kubeplay build` wrote")
    for required in (MANIFEST_NAME, SUMS_NAME):
        if not (bundle_dir / required).is_file():
            raise BadInput(
                f"{bundle_dir}: not a finished kubeplay bundle (no {required})",
                hint="pass the directory `kubeplay build` wrote; a build that did not finish has no SHA256SUMS",
            )
    manifest = read_manifest(bundle_dir)
    sums = read_sha256sums(bundle_dir / SUMS_NAME)
    delta = read_delta(bundle_dir)

    def check(digests: Mapping[str, str], symlinks: Mapping[str, str]) -> None:
        report = compare_digests(sums, digests, symlinks, manifest, delta)
        if not report.ok:
            raise BundleError(
                f"{bundle_dir}: {report.counts()}; not packed:\n{report.render()}",
                hint="the bundle changed after it was built; run `kubeplay build` again to refresh it",
            )

    stem = archive_stem(manifest.kube_version, manifest.arches) + (delta_suffix(delta) if delta else "")
    return pack_bundle(
        bundle_dir,
        out_dir,
        stem,
        split_size=split_size,
        compression=compression,
        level=level,
        check_digests=check,
        on_progress=on_progress,
    )


def unpack_commands(result: PackResult) -> list[str]:
    """One-line shell commands that check and unpack `result` with plain tools, run where the files are.

    gzip needs only coreutils and tar; zstd also needs the `zstd` binary (not on a minimal Debian).
    """
    name = result.archive.name
    if result.parts:
        sums = _parts_sums_path(result.archive.parent, name).name
        cat = f"cat {name}.part* | "
        gzip_unpack, zstd_unpack = f"{cat}tar -xzf -", f"{cat}zstd -dc | tar -xf -"
    else:
        sums = result.sha256_file.name
        gzip_unpack, zstd_unpack = f"tar -xzf {name}", f"zstd -dc {name} | tar -xf -"
    unpack = gzip_unpack if result.compression is Compression.GZIP else zstd_unpack
    return [f"sha256sum -c {sums} && {unpack}"]
