"""One transfer of one item: GET with Range from where its .part ends, hash while writing, verify, rename.

`Transfer.run()` raises DigestMismatch for wrong bytes, TransientError or an httpx error for what a retry
may fix, FetchError for what it cannot, Interrupted when stopped; the caller (Downloader) owns the retry loop. `DiskSpace` keeps concurrent transfers from
promising the same free bytes twice.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx

from kubeplay.console import TransferBar, human_bytes
from kubeplay.errors import DigestMismatch, FetchError
from kubeplay.fetch.body import BodyCopy
from kubeplay.fetch.clients import Session
from kubeplay.fetch.items import DownloadItem, FileFacts, part_path
from kubeplay.fetch.retry import TransientError
from kubeplay.fetch.verified import VerifiedCache, hash_file

__all__ = ["FREE_SPACE_MARGIN", "DiskSpace", "ItemState", "Transfer", "existing_dir"]

CHUNK = 1 << 20
FREE_SPACE_MARGIN = 64 << 20


def existing_dir(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class DiskSpace:
    """Free-space accounting shared by parallel transfers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outstanding = 0

    def reserve(self, dest: Path, length: int) -> None:
        with self._lock:
            free = shutil.disk_usage(existing_dir(dest.parent)).free
            if length + self._outstanding + FREE_SPACE_MARGIN > free:
                raise FetchError(f"not enough free space: {human_bytes(length)} needed, {human_bytes(free)} free")
            self._outstanding += length

    def release(self, length: int) -> None:
        with self._lock:
            self._outstanding -= length


@dataclass
class ItemState:
    """What the attempts of one item share: whether its size is counted in the bar, its validator."""

    sized: bool
    validator: str | None = None


def _validator(headers: httpx.Headers) -> str | None:
    etag = str(headers.get("etag") or "")
    if etag and not etag.startswith("W/"):
        return etag
    return str(headers.get("last-modified") or "") or None


class Transfer:
    """One GET of one item, appending to its .part from where the last attempt stopped; see run()."""

    def __init__(
        self,
        item: DownloadItem,
        url: str,
        session: Session,
        *,
        bar: TransferBar,
        state: ItemState,
        space: DiskSpace,
        cache: VerifiedCache,
        stop: threading.Event,
    ) -> None:
        self.space = space
        self.cache = cache
        self.stop = stop
        client, auth = session.client, session.auth
        self.state = state
        self.item = item
        self.url = url
        self.client = client
        self.auth = auth
        self.bar = bar
        self.part = part_path(item.dest)
        self.received = 0
        self.resumed_from = 0

    def _algos(self) -> tuple[str, ...]:
        extra = (self.item.checksum.algorithm,) if self.item.checksum else ()
        return tuple(dict.fromkeys(("sha256", *extra)))

    def run(self) -> FileFacts:
        offset = self.part.stat().st_size if self.part.is_file() else 0
        if self.item.size is not None and offset > self.item.size:
            self.part.unlink()
            offset = 0
        hashers = {a: hashlib.new(a) for a in self._algos()}
        if offset:
            with self.part.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    for h in hashers.values():
                        h.update(chunk)
        self.resumed_from = offset
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        if offset and self.state.validator:
            headers["If-Range"] = self.state.validator  # changed upstream since the cut: send it whole
        with self.client.stream("GET", self.url, headers=headers, auth=self.auth) as response:
            if response.status_code == 416 and offset:
                return self._finish(hashers, offset)
            if response.status_code == 206 and offset:
                start = _content_range_start(response.headers.get("content-range", ""))
                if start != offset:
                    raise TransientError("server answered a different byte range than asked")
                append = True
            elif response.status_code == 200:
                if offset and self.state.sized:
                    self.bar.add_total(offset)  # the server ignored Range: those bytes come again
                offset = 0
                hashers = {a: hashlib.new(a) for a in self._algos()}
                append = False
            else:
                response.raise_for_status()
                raise TransientError(f"unexpected HTTP {response.status_code}")
            self.state.validator = self.state.validator or _validator(response.headers)
            length = response.headers.get("content-length")
            remaining = int(length) if length and length.isdigit() else None
            if remaining is not None:
                if not self.state.sized:
                    self.state.sized = True
                    self.bar.add_total(remaining)
                self.space.reserve(self.part, remaining)
            fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o644)
            body = BodyCopy(fd, hashers.values(), advance=self.bar.advance, stop=self.stop)
            try:
                body.run(response, remaining, self.client.timeout.read)
            finally:
                self.received = body.received
                os.close(fd)
                if remaining is not None:
                    self.space.release(remaining)
            if remaining is not None and self.received < remaining:
                raise TransientError("connection closed before the whole body arrived")
        return self._finish(hashers, offset + self.received)

    def _finish(self, hashers: dict[str, hashlib._Hash], size: int) -> FileFacts:
        item = self.item
        if size == self.part.stat().st_size:
            digests = {a: h.hexdigest() for a, h in hashers.items()}
        else:  # cannot happen unless something else writes the .part: trust the disk, not the counters
            digests = hash_file(self.part, self._algos())
        if item.checksum is not None:
            expected = item.checksum.hex.lower()
            actual = digests[item.checksum.algorithm]
            if actual != expected:
                raise DigestMismatch(
                    f"{item.checksum.algorithm} mismatch: expected {expected}, got {actual}",
                    hint="the upstream or mirror served different bytes; nothing was kept",
                )
        if item.size is not None and size != item.size:
            raise DigestMismatch(f"size mismatch: expected {item.size} bytes, got {size}")
        self.part.replace(item.dest)
        self.cache.record(item.dest, digests)
        return FileFacts(digests["sha256"], size)


def _content_range_start(header: str) -> int | None:
    # "bytes 100-199/200"
    try:
        unit, _, rest = header.partition(" ")
        return int(rest.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None
