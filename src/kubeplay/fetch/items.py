"""What the downloader is given and what it reports: items, failures, per-file facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kubeplay.catalog.model import Checksum


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
    # upstream answered with something other than the item describes (other bytes, no such tag or arch):
    # for the user's own artifacts that is bundle.yaml to fix, not the network
    mismatch: bool = False


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
