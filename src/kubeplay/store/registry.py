"""The registry v2 storage layout, written so the CNCF distribution registry serves it unchanged.

Layout (distribution registry/storage/paths.go), below `<root>/docker/registry/v2/`:

    blobs/sha256/<first 2 hex>/<hex>/data                          every blob and manifest, once
    repositories/<name>/_layers/sha256/<hex>/link                  "sha256:<hex>" for each blob the repo uses
    repositories/<name>/_manifests/revisions/sha256/<hex>/link     each manifest (index and children)
    repositories/<name>/_manifests/tags/<tag>/current/link         the manifest a tag points at
    repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link

Blobs are content-addressed and shared by every repository; a blob file exists only once its bytes were
verified, and links are written after their targets, so a kill at any moment leaves a store whose every
link resolves. Link files hold the digest without a trailing newline, as the registry writes them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from kubeplay.errors import BundleError, DigestMismatch

V2 = Path("docker/registry/v2")


@dataclass
class RepositoryContent:
    """What one repository must keep: tags (tag -> manifest digest), manifests, blobs."""

    tags: dict[str, str] = field(default_factory=dict)
    manifests: set[str] = field(default_factory=set)
    blobs: set[str] = field(default_factory=set)


def _split(digest: str) -> tuple[str, str]:
    algo, sep, hexd = digest.partition(":")
    if not sep or algo != "sha256" or len(hexd) != 64 or any(c not in "0123456789abcdef" for c in hexd):
        raise BundleError(f"unsupported or malformed digest {digest!r}", hint="only sha256 digests are stored")
    return algo, hexd


def _check_repository(name: str) -> None:
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") or p.startswith("_") for p in parts):
        raise BundleError(f"invalid repository name {name!r}")


def _check_tag(tag: str) -> None:
    if not tag or "/" in tag or tag.startswith(".") or len(tag) > 128:
        raise BundleError(f"invalid tag {tag!r}")


def write_small(path: Path, data: bytes) -> None:
    """Write a small file atomically (temp + rename); a no-op when it already holds `data`."""
    try:
        if path.read_bytes() == data:
            return
    except (FileNotFoundError, NotADirectoryError):
        pass
    # unique per thread: images sharing a repository link the same blob from different threads
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
    tmp.replace(path)


class RegistryStorage:
    """The `registry/` directory of a bundle (the registry's `rootdirectory`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.v2 = root / V2

    # blobs
    def blob_path(self, digest: str) -> Path:
        algo, hexd = _split(digest)
        return self.v2 / "blobs" / algo / hexd[:2] / hexd / "data"

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def put_blob(self, digest: str, data: bytes) -> Path:
        """Store bytes (a manifest or config) under their digest after checking it; return the path."""
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise DigestMismatch(f"blob {digest}: content has digest {actual}")
        path = self.blob_path(digest)
        if not path.is_file():
            write_small(path, data)
        return path

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    # repositories
    def _repo(self, name: str) -> Path:
        _check_repository(name)
        return self.v2 / "repositories" / name

    def _link(self, path: Path, digest: str) -> None:
        write_small(path, digest.encode())

    def link_blob(self, repository: str, digest: str) -> None:
        algo, hexd = _split(digest)
        self._link(self._repo(repository) / "_layers" / algo / hexd / "link", digest)

    def link_manifest(self, repository: str, digest: str) -> None:
        algo, hexd = _split(digest)
        self._link(self._repo(repository) / "_manifests" / "revisions" / algo / hexd / "link", digest)

    def tag(self, repository: str, tag: str, digest: str) -> None:
        """Point `tag` at a manifest already linked in the repository."""
        _check_tag(tag)
        algo, hexd = _split(digest)
        base = self._repo(repository) / "_manifests" / "tags" / tag
        self._link(base / "index" / algo / hexd / "link", digest)
        self._link(base / "current" / "link", digest)

    def tag_digest(self, repository: str, tag: str) -> str | None:
        try:
            return (self._repo(repository) / "_manifests" / "tags" / tag / "current" / "link").read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def has_manifest(self, repository: str, digest: str) -> bool:
        algo, hexd = _split(digest)
        link = self._repo(repository) / "_manifests" / "revisions" / algo / hexd / "link"
        return link.is_file() and self.has_blob(digest)

    def repositories(self) -> Iterator[str]:
        """Names of repositories in the store (directories holding `_manifests`)."""
        top = self.v2 / "repositories"
        if not top.is_dir():
            return
        for dirpath, dirnames, _ in os.walk(top):
            if "_manifests" in dirnames:
                yield Path(dirpath).relative_to(top).as_posix()
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]

    def blob_sizes(self) -> dict[str, int]:
        """{hex digest: size} of every blob data file, in one scandir pass (no pathlib glob, no second stat)."""
        found: dict[str, int] = {}
        for hexd, names, path in self._blob_dirs():
            if "data" in names:
                with suppress(FileNotFoundError):
                    found[hexd] = os.stat(os.path.join(path, "data")).st_size
        return found

    def blob_file(self, hexd: str) -> str:
        """The data file of blob `hexd`, relative to the storage root."""
        return f"{V2.as_posix()}/blobs/sha256/{hexd[:2]}/{hexd}/data"

    def blob_files(self) -> Iterator[tuple[str, str]]:
        """(path relative to the storage root, hex digest) of every blob data file."""
        for hexd in self.blob_sizes():
            yield self.blob_file(hexd), hexd

    def store_size(self) -> tuple[int, int]:
        """(number of blobs, bytes) in the blob store."""
        sizes = self.blob_sizes()
        return len(sizes), sum(sizes.values())

    def _blob_dirs(self) -> Iterator[tuple[str, list[str], str]]:
        """(hex, names inside, path) of every directory blobs/sha256/<2>/<hex>."""
        top = os.path.join(self.v2, "blobs", "sha256")
        try:
            firsts = [e.path for e in os.scandir(top) if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return
        for first in firsts:
            with os.scandir(first) as entries:
                blob_dirs = [(e.name, e.path) for e in entries if e.is_dir(follow_symlinks=False)]
            for hexd, path in blob_dirs:
                yield hexd, os.listdir(path), path

    # pruning what a new plan no longer asks for
    def prune(self, keep: dict[str, RepositoryContent]) -> int:
        """Remove repositories, tags, links and blobs not in `keep`; return bytes of blobs removed."""
        for name in list(self.repositories()):
            content = keep.get(name)
            if content is None:
                shutil.rmtree(self._repo(name))
                continue
            self._prune_repo(name, content)
        referenced = set().union(*(c.manifests | c.blobs for c in keep.values())) if keep else set()
        freed = 0
        for hexd, names, path in list(self._blob_dirs()):
            keep_data = f"sha256:{hexd}" in referenced
            stale = [n for n in names if n.startswith("data") and not (keep_data and n == "data")]
            for name in stale:  # unreferenced blobs, and .part files of downloads never finished
                data = Path(path) / name
                freed += data.stat().st_size
                data.unlink()
            if stale:
                _remove_empty(Path(path), self.v2 / "blobs")
        return freed

    def _prune_repo(self, name: str, content: RepositoryContent) -> None:
        repo = self._repo(name)
        tags_dir = repo / "_manifests" / "tags"
        if tags_dir.is_dir():
            for tag_dir in tags_dir.iterdir():
                if tag_dir.name not in content.tags:
                    shutil.rmtree(tag_dir)
                else:
                    index = tag_dir / "index" / "sha256"
                    for entry in index.iterdir() if index.is_dir() else ():
                        if f"sha256:{entry.name}" != content.tags[tag_dir.name]:
                            shutil.rmtree(entry)
        for sub, wanted in (("_manifests/revisions/sha256", content.manifests), ("_layers/sha256", content.blobs)):
            links = repo / sub
            for entry in links.iterdir() if links.is_dir() else ():
                if f"sha256:{entry.name}" not in wanted:
                    shutil.rmtree(entry)
        shutil.rmtree(repo / "_uploads", ignore_errors=True)


def _remove_empty(path: Path, stop: Path) -> None:
    while path != stop and path.is_dir() and not any(path.iterdir()):
        path.rmdir()
        path = path.parent
