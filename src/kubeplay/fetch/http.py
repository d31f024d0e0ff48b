"""Parallel, resumable, verified HTTP downloads: the engine behind files, image blobs and OS packages.

Each item streams into `<dest>.part`, resumes with `Range` after a cut or a kill, and is renamed to
`<dest>` only once its checksum matches, so a file at `dest` is always complete and verified. Transient
faults are retried with backoff (see retry.py); one failed item never stops the others; the report lists
every failure with its URL, label (the kubespray variable) and reason. Ctrl-C stops every transfer
within about a second (see workers.py) and raises Interrupted; the .part files stay for the next run.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, as_completed
from pathlib import Path

from kubeplay.console import Output, TransferBar, human_bytes
from kubeplay.errors import DigestMismatch, FetchError, Interrupted, NotUpstream
from kubeplay.fetch.clients import ClientPool
from kubeplay.fetch.items import DownloadFailure, DownloadItem, DownloadReport, FileFacts, part_path
from kubeplay.fetch.mirrors import MirrorSet, redact
from kubeplay.fetch.retry import RetryPolicy, TransientError
from kubeplay.fetch.transfer import FREE_SPACE_MARGIN, DiskSpace, ItemState, Transfer, existing_dir
from kubeplay.fetch.verified import VerifiedCache
from kubeplay.fetch.workers import WorkerPool

__all__ = ["DownloadBatch", "DownloadFailure", "DownloadItem", "DownloadReport", "Downloader", "FileFacts", "part_path"]


class Downloader:
    """Downloads items in parallel through the mirrors; see download_all."""

    def __init__(
        self,
        mirrors: MirrorSet | None = None,
        *,
        out: Output,
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
        self.out = out
        self.progress = progress
        self.cache = VerifiedCache(verified_cache)
        self.stop = self.clients.stop  # shared with the registry client and every pool on these clients
        self.space = DiskSpace()

    def close(self) -> None:
        self.cache.save()
        self.clients.close()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:
            self.stop.set()
        self.close()

    def download_all(self, items: Sequence[DownloadItem], *, title: str = "files") -> DownloadReport:
        """Fetch every item not already present and verified; never raises for a single item's failure.

        Raises FetchError before any download when the known sizes do not fit on the disk, Interrupted on Ctrl-C.
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
                root = existing_dir(item.dest.parent)
                by_dir[root] = by_dir.get(root, 0) + max(item.size - have, 0)
        for root, need in by_dir.items():
            free = shutil.disk_usage(root).free
            if need + FREE_SPACE_MARGIN > free:
                raise FetchError(
                    f"not enough free space in {root}: {human_bytes(need)} to download, {human_bytes(free)} free",
                    hint="free some space or build into a directory on a larger disk (-o DIR)",
                )

    def _fetch_one(self, item: DownloadItem, bar: TransferBar) -> tuple[FileFacts, int]:
        """(facts, bytes fetched) of one item; raises FetchError (DigestMismatch) when it failed for good."""
        resolved = self.clients.resolve(item.url)
        session = self.clients.for_url(resolved)
        clock = self.policy.start()
        restarted = False
        fetched = 0
        state = ItemState(sized=item.size is not None)
        if item.checksum is None:
            # Without a digest a .part from an earlier run cannot be trusted to be the same version.
            part_path(item.dest).unlink(missing_ok=True)
        item.dest.parent.mkdir(parents=True, exist_ok=True)
        while True:
            if self.stop.is_set():
                raise Interrupted("download stopped")
            attempt = Transfer(
                item, resolved.url, session, bar=bar, state=state, space=self.space, cache=self.cache, stop=self.stop
            )
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
            except (FetchError, Interrupted):
                raise
            except Exception as exc:  # noqa: BLE001 - back_off raises again what no retry fixes
                fetched += attempt.received
                clock.back_off(exc, self.stop)


class DownloadBatch:
    """Items added in any number of calls, downloaded in parallel as soon as they are added."""

    def __init__(self, downloader: Downloader, title: str) -> None:
        self.d = downloader
        self.title = title
        self.report = DownloadReport()
        self._seen: set[Path] = set()
        self._futures: dict[Future[tuple[FileFacts, int]], DownloadItem] = {}
        self._pool: WorkerPool | None = None
        self._bar: TransferBar | None = None
        self._fetched = 0
        self._lock = threading.Lock()

    def __enter__(self) -> DownloadBatch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, *tb: object) -> None:
        """Leaving on an exception stops every transfer (their .part files stay); Ctrl-C becomes Interrupted."""
        if exc_type is not None:
            self.d.stop.set()
        if self._pool is not None:
            if exc_type is None:
                self._pool.shutdown()
            else:
                self._pool.abandon()
        if self._bar is not None:
            self._bar.__exit__()
        self.d.cache.save()
        if isinstance(exc, KeyboardInterrupt) and self._futures:
            raise Interrupted(
                f"interrupted while downloading {self.title}: {self._fetched} of {len(self._futures)} done; "
                "what arrived of the others is kept in .part files"
            ) from exc

    def add(self, items: Sequence[DownloadItem], on_done: Callable[[DownloadItem, bool], None] | None = None) -> None:
        """Skip items already present and verified; start the others. Raise FetchError if they cannot fit.

        `on_done(item, ok)` is called once for every item accepted here (not for a dest added before): at
        once for an item already present, else on its worker thread as soon as it is verified in place or
        has failed, always before finish() returns.
        """
        todo: list[DownloadItem] = []
        for item in items:
            if item.dest in self._seen:
                continue
            self._seen.add(item.dest)
            facts = self.d._present(item)
            if facts is not None:
                self.report.skipped.append(item)
                self.report.facts[item.dest] = facts
                if on_done is not None:
                    on_done(item, True)
            else:
                todo.append(item)
        if not todo:
            return
        self.d._check_space(todo)
        if self._bar is None:
            self._bar = self.d.out.transfer(self.title, enabled=self.d.progress).__enter__()
            self._pool = WorkerPool(self.d.jobs, "kubeplay-fetch", self.d.stop)
        assert self._pool is not None
        for item in todo:
            if item.size is not None:
                part = part_path(item.dest)
                self._bar.add_total(max(item.size - (part.stat().st_size if part.is_file() else 0), 0))
            self._bar.add_item()
            self._futures[self._pool.submit(self._fetch, item, self._bar, on_done)] = item

    def _fetch(
        self, item: DownloadItem, bar: TransferBar, on_done: Callable[[DownloadItem, bool], None] | None
    ) -> tuple[FileFacts, int]:
        # on_done runs inside the task, so it has returned by the time finish() sees the future done
        ok = False
        try:
            found = self.d._fetch_one(item, bar)
            ok = True
            with self._lock:
                self._fetched += 1
            return found
        finally:
            if on_done is not None:
                on_done(item, ok)

    def finish(self) -> DownloadReport:
        """Wait for every item added so far; return the report. Raises Interrupted when the run was stopped."""
        report = self.report
        for future in as_completed(self._futures):
            item = self._futures[future]
            try:
                facts, fetched = future.result()
            except Interrupted:
                continue
            except Exception as exc:  # noqa: BLE001 - one failure must not lose the others' work
                mismatch = isinstance(exc, DigestMismatch | NotUpstream)
                report.failed.append(DownloadFailure(redact(item.url), item.label, self._reason(item, exc), mismatch))
            else:
                report.done.append(item)
                report.facts[item.dest] = facts
                report.bytes_fetched += fetched
            if self._bar is not None:
                self._bar.item_done()
        if self.d.stop.is_set():
            raise Interrupted(f"downloading {self.title} was stopped")
        self._futures = {}
        return report

    def _reason(self, item: DownloadItem, exc: Exception) -> str:
        """The report's reason for a failed item: the error, the mirror it came through, what was kept."""
        if not isinstance(exc, FetchError | TransientError | OSError):
            return redact(f"{type(exc).__name__}: {exc}")
        reason = str(exc)
        resolved = self.d.clients.resolve(item.url)
        if isinstance(exc, FetchError) and resolved.mirrored and resolved.url != item.url:
            reason += f" (via mirror {resolved.url})"
        if isinstance(exc, DigestMismatch):
            reason += "; nothing was kept"
        return redact(reason)
