"""The two archive formats: zstd (fast, multi-threaded) and gzip (readable by plain `tar xzf` anywhere).

The format is told by the first bytes (zstd frame `28 b5 2f fd`, gzip member `1f 8b`), never by the file
name. gzip output goes through `pigz` when it is installed (a subprocess fed through a pipe, so no
temporary copy) and through zlib in-process otherwise. Either way kubeplay writes its own gzip header
with an extra field (RFC 1952 FEXTRA, subfield `KP`) holding the exact tar size, because the trailer's
ISIZE is only the size modulo 2^32; gzip, pigz, busybox and GNU tar skip that field.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from enum import StrEnum
from typing import IO, BinaryIO, Protocol, cast

import zstandard

from kubeplay import settings
from kubeplay.errors import BadInput, BundleError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20
# gzip header fields (RFC 1952): deflate, FEXTRA flag, OS 3 (Unix, what gzip and pigz write)
_DEFLATE, _FEXTRA, _OS_UNIX = 8, 0x04, 3
_SIZE_SUBFIELD = b"KP"
PIGZ_TIMEOUT = 600  # seconds for pigz to flush after its input closed


class Compression(StrEnum):
    ZSTD = "zstd"
    GZIP = "gzip"


SUFFIXES = {Compression.ZSTD: ".tar.zst", Compression.GZIP: ".tar.gz"}
KNOWN_SUFFIXES = (".tar.zst", ".tar.gz", ".tgz", ".tar.zstd")
DEFAULT_LEVELS = {Compression.ZSTD: 3, Compression.GZIP: 6}
MAX_LEVELS = {Compression.ZSTD: 19, Compression.GZIP: 9}


def detect_compression(head: bytes) -> Compression | None:
    """The format whose magic bytes `head` starts with, or None for anything else."""
    if head.startswith(ZSTD_MAGIC):
        return Compression.ZSTD
    if head.startswith(GZIP_MAGIC):
        return Compression.GZIP
    return None


def strip_archive_suffix(name: str) -> str:
    """`kubeplay-X` for `kubeplay-X.tar.zst`, `.tar.gz` or `.tgz`; other names unchanged."""
    for suffix in KNOWN_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def check_level(compression: Compression, level: int | None) -> int:
    """The level to use: `level`, or the format's default; raise BadInput when out of range."""
    if level is None:
        return DEFAULT_LEVELS[compression]
    if not 1 <= level <= MAX_LEVELS[compression]:
        raise BadInput(
            f"--level {level} is out of range for {compression}",
            hint=f"{compression} levels are 1 to {MAX_LEVELS[compression]}",
        )
    return level


def gzip_header(tar_size: int, xfl: int = 0) -> bytes:
    """A gzip member header with no name and mtime 0 whose extra field records `tar_size` (8 bytes LE)."""
    subfield = _SIZE_SUBFIELD + struct.pack("<HQ", 8, tar_size)
    return struct.pack("<2sBBIBBH", GZIP_MAGIC, _DEFLATE, _FEXTRA, 0, xfl, _OS_UNIX, len(subfield)) + subfield


def gzip_declared_size(head: bytes) -> int | None:
    """The tar size kubeplay recorded in a gzip header's extra field, or None when there is none."""
    if len(head) < 12 or not head.startswith(GZIP_MAGIC) or head[2] != _DEFLATE or not head[3] & _FEXTRA:
        return None
    (xlen,) = struct.unpack_from("<H", head, 10)
    extra, pos = head[12 : 12 + xlen], 0
    while pos + 4 <= len(extra):
        ident, length = extra[pos : pos + 2], struct.unpack_from("<H", extra, pos + 2)[0]
        if ident == _SIZE_SUBFIELD and length == 8 and pos + 12 <= len(extra):
            return int(struct.unpack_from("<Q", extra, pos + 4)[0])
        pos += 4 + length
    return None


def gzip_tar_size(head: bytes, tail: bytes) -> int | None:
    """Exact tar size of a gzip archive from its first bytes and its last 4 (ISIZE), or None when unknown.

    The size in kubeplay's extra field is trusted only when it agrees with ISIZE (size mod 2^32);
    an archive from other tools has no such field, and ISIZE alone cannot tell 1 GiB from 5 GiB.
    """
    declared = gzip_declared_size(head)
    if declared is None or len(tail) < 4:
        return None
    (isize,) = struct.unpack("<I", tail[-4:])
    return declared if declared % (1 << 32) == isize else None


def _xfl(level: int) -> int:
    return 2 if level == 9 else 4 if level == 1 else 0


class ByteWriter(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...


class _ZlibGzipWriter:
    """One gzip member written with zlib in this process: header, raw deflate, CRC32 and ISIZE."""

    def __init__(self, sink: ByteWriter, tar_size: int, level: int) -> None:
        self.sink = sink
        self.deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        self.crc = 0
        self.size = 0
        sink.write(gzip_header(tar_size, _xfl(level)))

    def write(self, data: bytes | memoryview, /) -> int:
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        out = self.deflate.compress(data)
        if out:
            self.sink.write(out)
        return len(data)

    def close(self) -> None:
        self.sink.write(self.deflate.flush())
        self.sink.write(struct.pack("<II", self.crc, self.size & 0xFFFFFFFF))


class _PigzWriter:
    """Tar bytes into `pigz -n` through a pipe; a thread moves its output (with kubeplay's header) to the sink."""

    def __init__(self, pigz: str, sink: ByteWriter, tar_size: int, level: int, threads: int) -> None:
        self.sink = sink
        self.tar_size = tar_size
        self.error: BaseException | None = None
        self.wrote = False
        self.proc = subprocess.Popen(
            [pigz, "-n", "-c", f"-{level}", "-p", str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.thread = threading.Thread(target=self._pump, name="kubeplay-pigz-output", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        stdout = cast(IO[bytes], self.proc.stdout)
        try:
            head = stdout.read(10)
            if not head:
                return  # pigz exited without output: its exit status and message tell why
            if len(head) < 10 or head[:4] != GZIP_MAGIC + bytes((_DEFLATE, 0)):
                raise BundleError(
                    f"pigz wrote an unexpected gzip header {head.hex()}", hint="use pigz 2.x or uninstall it"
                )
            self.wrote = True
            self.sink.write(gzip_header(self.tar_size, head[8]))  # pigz's XFL byte, kubeplay's extra field
            while chunk := stdout.read(CHUNK):
                self.sink.write(chunk)
        except BaseException as exc:  # noqa: BLE001 - raised again in the writing thread
            self.error = exc
            while stdout.read(CHUNK):  # keep pigz from blocking on a full pipe until the writer notices
                pass

    def _failure(self, what: str) -> BundleError:
        stderr = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
        return BundleError(f"pigz {what}: {stderr or 'no message'}", hint="check free space, or uninstall pigz")

    def write(self, data: bytes | memoryview, /) -> int:
        if self.error is not None:
            raise self.error
        try:
            cast(IO[bytes], self.proc.stdin).write(data)
        except BrokenPipeError:
            self.proc.wait(timeout=PIGZ_TIMEOUT)
            self.thread.join(timeout=PIGZ_TIMEOUT)
            self._raise_failure()
            raise self._failure("stopped reading its input") from None
        return len(data)

    def _raise_failure(self) -> None:
        """Raise what went wrong once pigz has exited: its exit status first, then the output thread's error."""
        if self.proc.returncode:
            raise self._failure(f"exited with status {self.proc.returncode}")
        if self.error is not None:
            raise self.error
        if not self.wrote:
            raise self._failure("wrote nothing")

    def close(self) -> None:
        with suppress(BrokenPipeError):
            cast(IO[bytes], self.proc.stdin).close()
        self.thread.join(timeout=PIGZ_TIMEOUT)
        self.proc.wait(timeout=PIGZ_TIMEOUT)
        self._raise_failure()

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=PIGZ_TIMEOUT)
        self.thread.join(timeout=PIGZ_TIMEOUT)


def gzip_tool() -> str | None:
    """Path of `pigz` when installed (KUBEPLAY_PIGZ=0 turns it off), else None for in-process zlib."""
    if not settings.from_environ().pigz:
        return None
    return shutil.which("pigz")


@contextmanager
def compressing_writer(
    compression: Compression, sink: ByteWriter, tar_size: int, level: int, threads: int = -1
) -> Iterator[ByteWriter]:
    """A writer for the tar stream that compresses into `sink`; the output is complete when the block ends."""
    if compression is Compression.ZSTD:
        compressor = zstandard.ZstdCompressor(
            level=level, threads=threads, write_checksum=True, write_content_size=True
        )
        with compressor.stream_writer(cast(BinaryIO, sink), size=tar_size, write_size=CHUNK, closefd=False) as zw:
            yield cast(ByteWriter, zw)
        return
    pigz = gzip_tool()
    if pigz is None:
        writer = _ZlibGzipWriter(sink, tar_size, level)
        yield writer
        writer.close()
        return
    piped = _PigzWriter(pigz, sink, tar_size, level, threads if threads > 0 else os.cpu_count() or 1)
    try:
        yield piped
        piped.close()
    except BaseException:
        piped.abort()
        raise


def decompressing_reader(compression: Compression, raw: IO[bytes]) -> IO[bytes]:
    """A reader of the tar bytes inside `raw`; corrupt data raises `DECOMPRESS_ERRORS` while reading."""
    if compression is Compression.ZSTD:
        return cast(IO[bytes], zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False))
    return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))


# gzip.BadGzipFile is an OSError; EOFError is a truncated gzip stream.
DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (zstandard.ZstdError, gzip.BadGzipFile, EOFError, zlib.error)
