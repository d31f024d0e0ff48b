"""Parallel, resumable, verified HTTP downloads: the engine behind files, image blobs and OS packages.

Each item streams into `<dest>.part`, resumes with `Range` after a cut or a kill, and is renamed to
`<dest>` only once its checksum matches, so a file at `dest` is always complete and verified. Transient
faults are retried with backoff (see retry.py); one failed item never stops the others; the report lists
every failure with its URL, label (the kubespray variable) and reason.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kubeplay.catalog.model import Checksum
from kubeplay.console import human_bytes
from kubeplay.errors import DigestMismatch, FetchError
from kubeplay.fetch.clients import ClientPool
from kubeplay.fetch.mirrors import MirrorSet, Resolved, redact
from kubeplay.fetch.progress import TransferProgress
from kubeplay.fetch.retry import FinalError, RetryPolicy, TransientError, describe, is_transient
from kubeplay.fetch.verified import VerifiedCache, hash_file

CHUNK = 1 << 20
FREE_SPACE_MARGIN = 64 << 20


@dataclass(frozen=True)
class DownloadItem:
    url: str
    dest: Path
    checksum: Checksum | None
    size: int | None = None
    label: str = ""


@dataclass(frozen=True)
class DownloadFailure:
    url: str
    label: str
    reason: str


@dataclass(frozen=True)
class FileFacts:
    sha256: str
    size: int


@dataclass
class DownloadReport:
    done: list[DownloadItem] = field(default_factory=list)
    skipped: list[DownloadItem] = field(default_factory=list)
    failed: list[DownloadFailure] = field(default_factory=list)
    bytes_fetched: int = 0
    facts: dict[Path, FileFacts] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _existing_dir(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class _Stopped(Exception):
    pass


class Downloader:
    """Downloads items in parallel through the mirrors; see download_all."""

    def __init__(
        self,
        mirrors: MirrorSet | None = None,
        *,
        jobs: int = 8,
        retries: int = 5,
        timeout: float = 60.0,
        progress: bool = True,
        verified_cache: Path | None = None,
        policy: RetryPolicy | None = None,
        clients: ClientPool | None = None,
    ) -> None:
        self.jobs = max(1, jobs)
        self.policy = policy or RetryPolicy(attempts=max(1, retries))
        self.clients = clients or ClientPool(mirrors, connections=self.jobs, timeout=timeout)
        self.progress = progress
        self.cache = VerifiedCache(verified_cache)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._outstanding = 0

    def close(self) -> None:
        self.cache.save()
        self.clients.close()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def download_all(self, items: Sequence[DownloadItem], *, title: str = "files") -> DownloadReport:
        """Fetch every item not already present and verified; never raises for a single item's failure.

        Raises FetchError before any download when the known sizes do not fit on the disk.
        """
        with self.batch(title) as batch:
            batch.add(items)
            return batch.finish()

    def batch(self, title: str = "files") -> DownloadBatch:
        """A batch that accepts items while earlier ones download (one bar, one report)."""
        return DownloadBatch(self, title)

    def _present(self, item: DownloadItem) -> FileFacts | None:
        """Facts of `dest` when it already holds the right bytes (from the cache, or by hashing it)."""
        if not item.dest.is_file():
            return None
        algos = (item.checksum.algorithm,) if item.checksum else ()
        digests = self.cache.ensure(item.dest, (*algos, "sha256"))
        if item.checksum is not None and digests.get(item.checksum.algorithm) != item.checksum.hex.lower():
            return None
        size = item.dest.stat().st_size
        if item.size is not None and size != item.size:
            return None
        return FileFacts(digests["sha256"], size)

    def _check_space(self, todo: Sequence[DownloadItem]) -> None:
        by_dir: dict[Path, int] = {}
        for item in todo:
            if item.size is not None:
                part = part_path(item.dest)
                have = part.stat().st_size if part.is_file() else 0
                root = _existing_dir(item.dest.parent)
                by_dir[root] = by_dir.get(root, 0) + max(item.size - have, 0)
        for root, need in by_dir.items():
            free = shutil.disk_usage(root).free
            if need + FREE_SPACE_MARGIN > free:
                raise FetchError(
                    f"not enough free space in {root}: {human_bytes(need)} to download, {human_bytes(free)} free",
                    hint="free some space or build into a directory on a larger disk (-o DIR)",
                )

    def _reserve(self, dest: Path, length: int) -> None:
        with self._lock:
            free = shutil.disk_usage(_existing_dir(dest.parent)).free
            if length + self._outstanding + FREE_SPACE_MARGIN > free:
                raise FinalError(f"not enough free space: {human_bytes(length)} needed, {human_bytes(free)} free")
            self._outstanding += length

    def _release(self, length: int) -> None:
        with self._lock:
            self._outstanding -= length

    def _fetch_one(self, item: DownloadItem, bar: TransferProgress) -> tuple[FileFacts, int]:
        resolved = self.clients.resolve(item.url)
        try:
            return self._fetch_resolved(item, resolved, bar)
        except (FetchError, FinalError) as exc:
            if resolved.mirrored and resolved.url != item.url:
                exc.args = (f"{exc} (via mirror {redact(resolved.url)})", *exc.args[1:])
                if isinstance(exc, FetchError):
                    exc.message = str(exc.args[0])
            raise

    def _fetch_resolved(self, item: DownloadItem, resolved: Resolved, bar: TransferProgress) -> tuple[FileFacts, int]:
        session = self.clients.for_url(resolved)
        clock = self.policy.start()
        restarted = False
        fetched = 0
        state = _ItemState(sized=item.size is not None)
        if item.checksum is None:
            # Without a digest a .part from an earlier run cannot be trusted to be the same version.
            part_path(item.dest).unlink(missing_ok=True)
        item.dest.parent.mkdir(parents=True, exist_ok=True)
        while True:
            if self._stop.is_set():
                raise _Stopped()
            attempt = _Attempt(self, item, resolved.url, session.client, session.auth, bar, state)
            try:
                facts = attempt.run()
                return facts, fetched + attempt.received
            except DigestMismatch:
                fetched += attempt.received
                part_path(item.dest).unlink(missing_ok=True)
                if attempt.resumed_from and not restarted:
                    restarted = True  # the old .part may have been a different upstream version
                    bar.add_total(attempt.resumed_from + attempt.received)
                    continue
                raise
            except (FinalError, _Stopped):
                raise
            except Exception as exc:
                fetched += attempt.received
                if not is_transient(exc):
                    if isinstance(exc, httpx.HTTPStatusError | httpx.HTTPError):
                        raise FinalError(describe(exc)) from None
                    raise
                wait = clock.next_wait()
                if wait is None:
                    tries = clock.attempt
                    raise FetchError(f"{describe(exc)} (gave up after {tries} tries)") from None
                if self._stop.wait(wait):
                    raise _Stopped() from None


@dataclass
class _ItemState:
    """What the attempts of one item share: whether its size is counted in the bar, its validator."""

    sized: bool
    validator: str | None = None


def _validator(headers: httpx.Headers) -> str | None:
    etag = str(headers.get("etag") or "")
    if etag and not etag.startswith("W/"):
        return etag
    return str(headers.get("last-modified") or "") or None


class _Attempt:
    """One GET of one item, appending to its .part from where the last attempt stopped."""

    def __init__(  # noqa: PLR0917 - private, called from one place
        self,
        downloader: Downloader,
        item: DownloadItem,
        url: str,
        client: httpx.Client,
        auth: httpx.Auth,
        bar: TransferProgress,
        state: _ItemState,
    ) -> None:
        self.d = downloader
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
                mode = "ab"
            elif response.status_code == 200:
                if offset and self.state.sized:
                    self.bar.add_total(offset)  # the server ignored Range: those bytes come again
                offset = 0
                hashers = {a: hashlib.new(a) for a in self._algos()}
                mode = "wb"
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
                self.d._reserve(self.part, remaining)
            try:
                with self.part.open(mode) as out:
                    for chunk in response.iter_raw():  # no chunk_size: a buffered chunk would be lost on a cut
                        if self.d._stop.is_set():
                            raise _Stopped()
                        out.write(chunk)
                        for h in hashers.values():
                            h.update(chunk)
                        n = len(chunk)
                        self.received += n
                        self.bar.advance(n)
            finally:
                if remaining is not None:
                    self.d._release(remaining)
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
        self.d.cache.record(item.dest, digests)
        return FileFacts(digests["sha256"], size)


class DownloadBatch:
    """Items added in any number of calls, downloaded in parallel as soon as they are added."""

    def __init__(self, downloader: Downloader, title: str) -> None:
        self.d = downloader
        self.title = title
        self.report = DownloadReport()
        self._seen: set[Path] = set()
        self._futures: dict[Future[tuple[FileFacts, int]], DownloadItem] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._bar: TransferProgress | None = None

    def __enter__(self) -> DownloadBatch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:
            self.d._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)
        if self._bar is not None:
            self._bar.__exit__()
        self.d.cache.save()

    def add(self, items: Sequence[DownloadItem]) -> None:
        """Skip items already present and verified; start the others. Raise FetchError if they cannot fit."""
        todo: list[DownloadItem] = []
        for item in items:
            if item.dest in self._seen:
                continue
            self._seen.add(item.dest)
            facts = self.d._present(item)
            if facts is not None:
                self.report.skipped.append(item)
                self.report.facts[item.dest] = facts
            else:
                todo.append(item)
        if not todo:
            return
        self.d._check_space(todo)
        if self._bar is None:
            self._bar = TransferProgress(self.title, 0, 0, enabled=self.d.progress).__enter__()
            self._pool = ThreadPoolExecutor(max_workers=self.d.jobs, thread_name_prefix="kubeplay-fetch")
        assert self._pool is not None
        for item in todo:
            if item.size is not None:
                part = part_path(item.dest)
                self._bar.add_total(max(item.size - (part.stat().st_size if part.is_file() else 0), 0))
            self._bar.add_item()
            self._futures[self._pool.submit(self.d._fetch_one, item, self._bar)] = item

    def finish(self) -> DownloadReport:
        """Wait for every item added so far; return the report."""
        report = self.report
        for future in as_completed(self._futures):
            item = self._futures[future]
            try:
                facts, fetched = future.result()
            except _Stopped:
                continue
            except Exception as exc:  # noqa: BLE001 - one failure must not lose the others' work
                report.failed.append(DownloadFailure(redact(item.url), item.label, _reason(exc)))
            else:
                report.done.append(item)
                report.facts[item.dest] = facts
                report.bytes_fetched += fetched
            if self._bar is not None:
                self._bar.item_done()
        self._futures = {}
        return report


def _reason(exc: Exception) -> str:
    if isinstance(exc, DigestMismatch):
        return f"{exc}; nothing was kept"
    if isinstance(exc, FetchError | FinalError | TransientError | OSError):
        return redact(str(exc))
    return redact(f"{type(exc).__name__}: {exc}")


def _content_range_start(header: str) -> int | None:
    # "bytes 100-199/200"
    try:
        unit, _, rest = header.partition(" ")
        return int(rest.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None
