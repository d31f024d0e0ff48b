"""Writing checked archive members below a staging directory, on a second thread.

The archive pass (decompress, parse tar, member checks) runs on the caller's thread and hands each
member to `StagingWriter`, which queues it; one worker thread performs every file-system operation in
archive order (so a member's parent already exists, and a hardlink's target is already written).
The caller's thread reads the archive (its own sha256, zstd, tar); the worker hashes each file's bytes as it
writes them. zstd, sha256 and file writes release the GIL, so the two threads overlap like
`zstd -dc | tar -x` does, with the two sha256 passes (archive, content) on different cores.

Each operation re-checks the real path of the member's parent (an earlier member may be a symlink)
and creates the entry with O_EXCL | O_NOFOLLOW. Symlinks and hardlinks also pass tarfile's 'data'
filter, which resolves where they point on disk (a chain of links, each harmless by name, can point
above the target). For directories and regular files the filter's check (the entry's real path inside
the target) is what the parent check and O_NOFOLLOW already establish, and it costs two realpath walks
per member on the thread that limits extraction: their modes follow the filter's rules in `data_mode`
instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kubeplay.errors import BundleError

# One size for the whole extraction pipeline (read, decompress, tar, hand over, hash, write), small
# enough that a chunk is hashed and written while it is still in the CPU cache (bench/serve.py times extraction).
CHUNK = 128 << 10
QUEUE_CHUNKS = 32  # bytes in flight between the threads: at most this many chunks
PENDING = ""  # the digest placeholder the scan records until the worker has hashed the file


def refuse(member: str, why: str) -> BundleError:
    return BundleError(
        f"unsafe archive member {member!r}: {why}",
        hint="this archive was not written by `kubeplay pack`, or was altered; nothing was extracted",
    )


def within(real: str, root: str) -> bool:
    """Whether the real path `real` is `root` or below it (both resolved, no trailing separator)."""
    return real == root or real.startswith(root + os.sep)


def data_mode(info: tarfile.TarInfo) -> int | None:
    """The mode tarfile's 'data' filter gives a regular file (None for a directory: 0755 is used): no
    setuid/setgid/sticky or group/other write bits, owner read and write, executable only when the owner's
    execute bit is set."""
    if not info.isreg():
        return None
    mode = info.mode & 0o755
    if not mode & 0o100:
        mode &= ~0o111
    return mode | 0o600


@dataclass(frozen=True)
class StagedMember:
    """What the worker needs about one member: its tar header, its name, and its bundle-relative path."""

    info: tarfile.TarInfo
    name: str
    relpath: str
    link_relpath: str | None = None


_Item = tuple[str, StagedMember | bytes | None]


class StagingWriter:
    """Queue of file-system operations below `staging`, executed in order by one worker thread."""

    def __init__(self, staging: Path, total: int, on_progress: Callable[[int, int], None] | None = None) -> None:
        self.root = os.path.realpath(staging)
        self.total = total
        self.done = 0
        self.on_progress = on_progress
        self.digests: dict[str, str] = {}
        self.dir_mtimes: list[tuple[str, int]] = []
        self._parents: dict[str, str] = {}  # directory -> its real path, checked inside the root
        self.error: BaseException | None = None
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._thread = threading.Thread(target=self._work, name="kubeplay-extract-writer", daemon=True)
        self._thread.start()

    # --- caller's thread -------------------------------------------------------------------------

    def _put(self, item: _Item) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def add(self, member: StagedMember, data: IO[bytes] | None) -> None:
        """Queue `member`; for a regular file, stream its bytes from `data` into the queue."""
        self._put(("member", member))
        if data is not None:
            while chunk := data.read(CHUNK):
                self._put(("data", chunk))
            self._put(("end", b""))

    def finish(self) -> None:
        """Wait for every queued operation; raise what the worker raised."""
        if self._thread.is_alive():
            self._put(("stop", None))
            self._thread.join()
        if self.error is not None:
            raise self.error
        for path, mtime in reversed(self.dir_mtimes):
            os.utime(path, (mtime, mtime))

    def abandon(self) -> None:
        """Stop the worker without raising (the caller is already handling an error)."""
        if self._thread.is_alive():
            self.error = self.error or BundleError("extraction abandoned")
            with contextlib.suppress(queue.Full):
                self._queue.put(("stop", None), timeout=5)
            self._thread.join(timeout=30)

    # --- worker thread -----------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while True:
                kind, payload = self._queue.get()
                if kind == "stop":
                    return
                if kind == "member" and isinstance(payload, StagedMember):
                    self._apply(payload)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
            self.error = exc
            while True:  # keep draining so the caller never blocks on a full queue
                try:
                    if self._queue.get(timeout=1)[0] == "stop":
                        return
                except queue.Empty:
                    return

    def _real_parent(self, member: StagedMember, path: str) -> str:
        """The real path of `path`'s parent, which must lie inside the root. Resolved once per directory:
        entries are only ever added (O_EXCL, no deletes), so a parent that resolved inside the root keeps
        doing so, and a resolve walks every component (an lstat each) of a path a dozen levels deep."""
        parent = os.path.dirname(path)
        real = self._parents.get(parent)
        if real is None:
            real = os.path.realpath(parent)
            if not within(real, self.root):
                raise refuse(member.info.name, "its parent directory resolves outside the target (through a symlink)")
            if os.path.isdir(real):  # a missing parent fails the write that follows; nothing to remember
                self._parents[parent] = real
        return real

    def _target(self, member: StagedMember) -> tuple[str, int | None]:
        path = os.path.join(self.root, member.name)
        parent = self._real_parent(member, path)
        info = member.info
        mode: int | None
        if info.issym() or info.islnk():
            try:
                mode = tarfile.data_filter(info, self.root).mode
            except tarfile.FilterError as exc:
                raise refuse(info.name, str(exc)) from exc
        else:
            mode = data_mode(info)
        return os.path.join(parent, os.path.basename(path)), mode

    def _apply(self, member: StagedMember) -> None:
        if member.name == "":
            return
        path, mode = self._target(member)
        info = member.info
        if info.isdir():
            if not os.path.isdir(path) or os.path.islink(path):
                os.mkdir(path, 0o755)
            self.dir_mtimes.append((path, int(info.mtime)))
        elif info.issym():
            os.symlink(info.linkname, path)
        elif info.islnk():
            source = os.path.join(self.root, os.path.normpath(info.linkname))
            os.link(source, path, follow_symlinks=False)
            if member.link_relpath is not None and member.link_relpath in self.digests:
                self.digests[member.relpath] = self.digests[member.link_relpath]
        else:
            self._write_file(member, path, 0o644 if mode is None else mode)

    def _write_file(self, member: StagedMember, path: str, mode: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        hasher = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            while True:
                kind, payload = self._queue.get()
                if not isinstance(payload, bytes) or kind not in ("data", "end"):
                    raise BundleError(f"internal error: {kind} while writing {member.name}")
                if kind == "end":
                    break
                hasher.update(payload)
                out.write(payload)
        digest = hasher.hexdigest()
        os.chmod(path, mode)
        os.utime(path, (member.info.mtime, member.info.mtime))
        self.digests[member.relpath] = digest
        self.done += member.info.size
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)
