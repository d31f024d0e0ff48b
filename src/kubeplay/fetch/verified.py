"""Digests of files already verified, keyed by their stat, so a re-run skips them without reading them.

A file whose size, mtime and inode are unchanged since it was verified is trusted; anything else is
hashed again. Saved atomically; a lost update (kill -9) only means the file is hashed once more.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from kubeplay.state import atomic_write

HASH_CHUNK = 1 << 20


def stat_key(path: Path) -> str | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def hash_file(path: Path, algorithms: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    hashers = {a: hashlib.new(a) for a in algorithms}
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


class VerifiedCache:
    """{absolute path: {"stat": key, "sha256": hex, ...}}; in memory when `path` is None."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, str]] = {}
        self._dirty = False
        if path is not None and path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    self._entries = loaded
            except (OSError, ValueError):
                self._entries = {}

    def digests(self, file: Path) -> dict[str, str] | None:
        """The recorded digests of `file` when it is unchanged since they were recorded."""
        with self._lock:
            entry = self._entries.get(str(file))
        if entry is None or entry.get("stat") != stat_key(file):
            return None
        return {k: v for k, v in entry.items() if k != "stat"}

    def record(self, file: Path, digests: dict[str, str]) -> None:
        key = stat_key(file)
        if key is None:
            return
        with self._lock:
            self._entries[str(file)] = {"stat": key, **digests}
            self._dirty = True

    def ensure(self, file: Path, algorithms: tuple[str, ...]) -> dict[str, str]:
        """Digests of `file` for `algorithms`, from the cache when possible, else by reading it."""
        known = self.digests(file) or {}
        if all(a in known for a in algorithms):
            return known
        fresh = hash_file(file, tuple(dict.fromkeys((*algorithms, "sha256"))))
        self.record(file, {**known, **fresh})
        return {**known, **fresh}

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        with self._lock:
            # files removed since (pruned by a newer plan) leave the cache too
            self._entries = {k: v for k, v in self._entries.items() if Path(k).exists()}
            body = json.dumps(self._entries, separators=(",", ":")).encode()
            self._dirty = False
        atomic_write(self.path, body)
