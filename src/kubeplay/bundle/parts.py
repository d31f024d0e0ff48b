"""Where a packed bundle's bytes come from: one `.tar.zst`/`.tar.gz`, or numbered parts plus a parts manifest.

`open_archive_source(path)` accepts the archive, its `.parts.json`, or any `.partNNN` file and returns
an `ArchiveSource` whose `open()` yields the compressed bytes in order while checking each part's size
and sha256 and the whole archive's sha256 as they stream past. Nothing here decompresses.
"""

from __future__ import annotations

import hashlib
import io
import json
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubeplay.bundle.compression import strip_archive_suffix
from kubeplay.errors import BadInput, BundleError

ARCHIVE_SUFFIX = ".tar.zst"  # the default format's; `compression.SUFFIXES` has both
PARTS_MANIFEST_SUFFIX = ".parts.json"
_PART_RE = re.compile(r"^(?P<archive>.+)\.part(?P<index>\d{3,})$")
_SIZE_RE = re.compile(r"^\s*(?P<num>\d+)\s*(?P<unit>[KMGT]?)(?P<dec>i?B?)\s*$", re.IGNORECASE)
READ_CHUNK = 1 << 20
HASH_QUEUE_CHUNKS = 32  # bytes read ahead of the hashing thread: at most this many chunks


def parts_manifest_name(archive_name: str) -> str:
    """`kubeplay-X.parts.json` for `kubeplay-X.tar.zst` or `.tar.gz`: outside the `….part*` glob that joins parts."""
    return strip_archive_suffix(archive_name) + PARTS_MANIFEST_SUFFIX


Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class PartEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="file name of the part, next to the parts manifest")
    size: int = Field(ge=0)
    sha256: Sha256Hex


class PartsManifest(BaseModel):
    """`<stem>.parts.json`: the parts in order, and the digest of the archive they join into."""

    model_config = ConfigDict(extra="forbid")

    format: int = 1
    archive: str = Field(description="file name of the joined archive (cat parts > archive)")
    size: int = Field(ge=0)
    sha256: Sha256Hex
    parts: list[PartEntry]


def parse_size(text: str) -> int:
    """Parse '4G', '512M', '4GiB' (powers of 1024) or '4GB' (powers of 1000) into bytes; raise BadInput."""
    m = _SIZE_RE.match(text)
    if not m:
        raise BadInput(
            f"cannot read size {text!r}",
            hint="write a number with an optional K, M, G or T suffix, e.g. 4G (GiB) or 4GB (10^9 bytes)",
        )
    power = " KMGT".index(m["unit"].upper() or " ")
    decimal = m["dec"].upper() == "B"
    value: int = int(m["num"]) * (1000 if decimal else 1024) ** power
    if value < 1024 * 1024:
        raise BadInput(f"split size {text!r} is smaller than 1 MiB", hint="use a size such as 4GB or 700M")
    return value


def sha256sum_line(digest: str, name: str) -> str:
    """One line in `sha256sum` format (two spaces: text mode, as sha256sum writes it)."""
    return f"{digest}  {name}\n"


def read_sidecar(path: Path) -> str | None:
    """The digest in `<archive>.sha256`, or None when there is no sidecar file."""
    if not path.is_file():
        return None
    first = path.read_text(encoding="utf-8").split()
    if not first or not re.fullmatch(r"[0-9a-fA-F]{64}", first[0]):
        raise BundleError(f"{path}: not in sha256sum format", hint="expected '<64 hex digits>  <file name>'")
    return first[0].lower()


@dataclass
class ArchiveSource:
    """A packed bundle on disk: the files holding its bytes in order, and the digests to hold them to."""

    archive_name: str
    files: list[Path]
    expected_sizes: list[int | None]
    expected_part_digests: list[str | None]
    expected_sha256: str | None
    expected_size: int | None
    digest_source: str | None
    split: bool = False
    actual_sha256: str | None = field(default=None, init=False)

    @property
    def label(self) -> str:
        return f"{self.archive_name} ({len(self.files)} parts)" if self.split else self.archive_name

    @property
    def compressed_size(self) -> int:
        return sum(p.stat().st_size for p in self.files)

    def open(self) -> io.BufferedReader:
        """A reader over the joined bytes; it raises BundleError at the end of a part that does not match."""
        return io.BufferedReader(_JoinedParts(self), buffer_size=READ_CHUNK)

    def check_whole(self, digest: str) -> None:
        self.actual_sha256 = digest
        if self.expected_sha256 is not None and digest != self.expected_sha256:
            raise BundleError(
                f"{self.archive_name}: sha256 {digest} does not match {self.expected_sha256} from {self.digest_source}",
                hint="the archive was changed or damaged in transit; copy it again from the build machine",
            )


class _JoinedParts(io.RawIOBase):
    """Raw reader over the parts in order. Each part's size is checked as it ends; the parts' and the whole
    archive's sha256 are computed on a thread of their own (the bytes are handed over, never re-read), so
    hashing overlaps decompression, and checked when the last byte has been read."""

    def __init__(self, source: ArchiveSource) -> None:
        self.source = source
        self.parts: Iterator[int] = iter(range(len(source.files)))
        self.current: io.FileIO | None = None
        self.index = -1
        self.part_size = 0
        self.done = False
        self.part_digests: dict[int, str] = {}
        self.whole_digest: str | None = None
        self._chunks: queue.Queue[tuple[int, bytes | None]] = queue.Queue(maxsize=HASH_QUEUE_CHUNKS)
        self._hasher = threading.Thread(target=self._hash, name="kubeplay-archive-sha256", daemon=True)
        self._hasher.start()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self.done:
            if self.current is None and not self._next_part():
                self.done = True
                self._finish()
                return 0
            assert self.current is not None
            data = self.current.read(len(buffer))
            if data:
                n = len(data)
                memoryview(buffer)[:n] = data
                self._chunks.put((self.index, data))
                self.part_size += n
                return n
            self.current.close()
            self.current = None
            self._chunks.put((self.index, None))
            self._check_part_size()
        return 0

    def _hash(self) -> None:
        whole = hashlib.sha256()
        part: hashlib._Hash | None = None
        while True:
            index, data = self._chunks.get()
            if index < 0:
                break
            if data is None:  # the end of part `index`
                if part is not None:
                    self.part_digests[index] = part.hexdigest()
                part = None
                continue
            if part is None and self.source.expected_part_digests[index] is not None:
                part = hashlib.sha256()  # a single-file archive is checked by the whole digest alone
            if part is not None:
                part.update(data)
            whole.update(data)
        self.whole_digest = whole.hexdigest()

    def _stop_hasher(self) -> None:
        if self._hasher.is_alive():
            self._chunks.put((-1, None))
            self._hasher.join()

    def _finish(self) -> None:
        self._stop_hasher()
        for index, path in enumerate(self.source.files):
            expected = self.source.expected_part_digests[index]
            if expected is not None and self.part_digests.get(index) != expected:
                raise BundleError(
                    f"{path.name}: sha256 does not match the parts manifest",
                    hint="the part was changed or damaged in transit; copy it again",
                )
        assert self.whole_digest is not None
        self.source.check_whole(self.whole_digest)

    def _next_part(self) -> bool:
        index = next(self.parts, None)
        if index is None:
            return False
        self.index = index
        self.part_size = 0
        self.current = self.source.files[index].open("rb", buffering=0)
        return True

    def _check_part_size(self) -> None:
        path = self.source.files[self.index]
        size = self.source.expected_sizes[self.index]
        if size is not None and self.part_size != size:
            raise BundleError(
                f"{path.name}: {self.part_size} bytes, the parts manifest says {size}",
                hint="the part was truncated or replaced; copy it again",
            )

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None
        self._stop_hasher()
        super().close()


def load_parts_manifest(path: Path) -> PartsManifest:
    try:
        return PartsManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, ValidationError) as exc:
        raise BundleError(f"{path}: not a valid parts manifest: {exc}") from exc


def _from_parts_manifest(path: Path, archive_name: str | None = None) -> ArchiveSource:
    manifest = load_parts_manifest(path)
    if archive_name is not None and manifest.archive != archive_name:
        raise BadInput(
            f"{path.name} lists the parts of {manifest.archive}, not of {archive_name}",
            hint=f"pass {path.name} itself, or copy the parts of {archive_name} and their manifest",
        )
    files = [path.parent / p.name for p in manifest.parts]
    for entry, file in zip(manifest.parts, files, strict=True):
        if Path(entry.name).name != entry.name:
            raise BundleError(f"{path}: part name {entry.name!r} is not a plain file name")
        if not file.is_file():
            raise BundleError(f"{file}: part listed in {path.name} is missing", hint="copy every part next to it")
    return ArchiveSource(
        archive_name=manifest.archive,
        files=files,
        expected_sizes=[p.size for p in manifest.parts],
        expected_part_digests=[p.sha256 for p in manifest.parts],
        expected_sha256=manifest.sha256,
        expected_size=manifest.size,
        digest_source=path.name,
        split=True,
    )


def open_archive_source(path: Path) -> ArchiveSource:
    """Find the archive bytes for `path` (archive, `.parts.json` or `.partNNN`); raise BadInput when none."""
    name = path.name
    part = _PART_RE.match(name)
    if part:
        path = path.with_name(part["archive"])
        name = path.name
    if name.endswith(PARTS_MANIFEST_SUFFIX):
        if not path.is_file():
            raise BadInput(f"{path}: no such file")
        return _from_parts_manifest(path)
    manifest = path.with_name(parts_manifest_name(name))
    if path.is_file():
        sidecar = path.with_name(name + ".sha256")
        return ArchiveSource(
            archive_name=name,
            files=[path],
            expected_sizes=[None],
            expected_part_digests=[None],
            expected_sha256=read_sidecar(sidecar),
            expected_size=None,
            digest_source=sidecar.name if sidecar.is_file() else None,
        )
    if manifest.is_file():
        return _from_parts_manifest(manifest, name)
    if path.with_name(name + ".part000").is_file():
        raise BadInput(
            f"{path}: found parts but not {manifest.name}",
            hint="copy the parts manifest too; it holds the digests the parts are checked against",
        )
    raise BadInput(f"{path}: no such archive, parts manifest or bundle directory")
