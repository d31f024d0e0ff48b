"""A content-addressed cache of upstream indexes and packages, filled through the shared downloader.

Files are kept by their sha256 (or sha512), so a second build of the same bundle downloads nothing
that upstream did not change, and a bundle links or copies its packages out of the cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from kubeplay.catalog.model import Checksum
from kubeplay.errors import FetchError
from kubeplay.fetch.http import Downloader, DownloadItem


@dataclass(frozen=True)
class Wanted:
    """One upstream file with the digest and size its index promises."""

    url: str
    checksum: Checksum
    size: int | None = None
    label: str = ""


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def blob_path(cache: Path, checksum: Checksum) -> Path:
    hexd = checksum.hex.lower()
    return cache / "blobs" / checksum.algorithm / hexd[:2] / hexd


def is_cached(cache: Path, want: Wanted) -> bool:
    """True when the cache holds the file and its bytes match the digest (a bad copy is removed)."""
    path = blob_path(cache, want.checksum)
    if not path.is_file():
        return False
    if (want.size is not None and path.stat().st_size != want.size) or file_digest(
        path, want.checksum.algorithm
    ) != want.checksum.hex.lower():
        path.unlink()
        return False
    return True


def fetch_into_cache(downloader: Downloader, cache: Path, wanted: list[Wanted], title: str) -> dict[str, Path]:
    """Download what the cache lacks; return url -> cached path. FetchError names every failure."""
    unique = {w.url: w for w in wanted}
    missing = [w for w in unique.values() if not is_cached(cache, w)]
    if missing:
        items = [
            DownloadItem(w.url, blob_path(cache, w.checksum), w.checksum, size=w.size, label=w.label) for w in missing
        ]
        for item in items:
            item.dest.parent.mkdir(parents=True, exist_ok=True)
        report = downloader.download_all(items, title=title)
        if report.failed:
            lines = [f"{f.url}: {f.reason}" for f in report.failed[:10]]
            more = f" (and {len(report.failed) - 10} more)" if len(report.failed) > 10 else ""
            raise FetchError(
                f"{len(report.failed)} of {len(items)} downloads failed{more}:\n  " + "\n  ".join(lines),
                hint="check that the mirror is reachable and complete, then run the same command again",
            )
    return {w.url: blob_path(cache, w.checksum) for w in unique.values()}


def fetch_fresh(downloader: Downloader, url: str, dest: Path, label: str) -> Path | None:
    """Download one file without a known digest (InRelease, repomd.xml); None when upstream has no such file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    report = downloader.download_all([DownloadItem(url, dest, None, label=label)], title=label)
    if report.failed:
        reason = report.failed[0].reason
        if "404" in reason or "410" in reason:
            return None
        raise FetchError(f"cannot fetch {url}: {reason}", hint="check the mirror URL in bundle.yaml and the network")
    return dest


def place(src: Path, dest: Path) -> None:
    """Put a cached file into the bundle: a hard link when on the same filesystem, else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    tmp.replace(dest)
