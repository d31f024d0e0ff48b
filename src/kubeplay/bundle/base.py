"""What a delta is built against (`kubeplay build --base BASE`): an inventory.json, a bundle directory or a
packed bundle (archive, or its parts), each read into an `Inventory`; and the base's own bytes of some
files, when they are at hand, for patches.

A bundle directory's content is its SHA256SUMS (sizes by stat); a delta directory's is the complete list
in its delta.json (base + delta = that full bundle). An archive is read in one streaming pass: its
SHA256SUMS, kubeplay.json, delta.json and every member's size, without hashing the members.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from kubeplay.bundle.compression import detect_compression
from kubeplay.bundle.delta import DELTA_NAME, DeltaRecord, parse_delta, read_delta
from kubeplay.bundle.extract import ArchiveEntry, hash_stream, scan_archive
from kubeplay.bundle.integrity import parse_sha256sums
from kubeplay.bundle.inventory import TOP_LEVEL_OWN, Entry, Inventory, make_inventory, read_inventory
from kubeplay.bundle.manifest import MANIFEST_NAME, SUMS_NAME, read_sha256sums, sha256_file
from kubeplay.bundle.parts import PARTS_MANIFEST_SUFFIX, open_archive_source
from kubeplay.errors import BadInput, BundleError

BASE_HINT = (
    "pass an inventory.json (`kubeplay status --inventory -o inventory.json` on the deploy node), "
    "a bundle directory, or a packed bundle (.tar.zst, .tar.gz or its .parts.json)"
)
_SKIPPED = "-"  # what the archive visitor returns for a member it does not hash


def _content_paths(content: Mapping[str, Entry]) -> dict[str, Entry]:
    """A bundle's content as an inventory lists it: without the files every bundle has its own copy of."""
    return {rel: e for rel, e in content.items() if rel not in TOP_LEVEL_OWN}


def inventory_of_directory(root: Path) -> Inventory:
    """The Inventory of a bundle directory (full or delta); raise BadInput when it is not a finished bundle."""
    for required in (MANIFEST_NAME, SUMS_NAME):
        if not (root / required).is_file():
            raise BadInput(f"{root}: not a finished kubeplay bundle directory (no {required})", hint=BASE_HINT)
    manifest = (root / MANIFEST_NAME).read_bytes()
    try:
        delta = read_delta(root)
        sums = read_sha256sums(root / SUMS_NAME)
    except BundleError as exc:
        raise BadInput(exc.message, hint=exc.hint) from None
    if delta is not None:
        content = delta.content
    else:
        content = {}
        for rel, digest in sums.items():
            try:
                size = (root / rel).stat().st_size
            except FileNotFoundError:
                raise BadInput(
                    f"{root / rel}: listed in {SUMS_NAME} but missing; the base bundle is incomplete",
                    hint="pass a complete bundle, or an inventory of the deploy node",
                ) from None
            content[rel] = Entry(sha256=digest, size=size)
    return make_inventory(f"bundle directory {root}", [(manifest, None)], _content_paths(content))


class _ArchiveIndexes:
    """Archive visitor keeping SHA256SUMS, kubeplay.json and delta.json and every member's size."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        self.sizes: dict[str, int] = {}

    def __call__(self, entry: ArchiveEntry, data: IO[bytes] | None) -> str | None:
        if entry.link_relpath is not None:
            self.sizes[entry.relpath] = self.sizes.get(entry.link_relpath, 0)
        elif entry.info.isreg():
            self.sizes[entry.relpath] = entry.info.size
        if data is not None and entry.relpath in (SUMS_NAME, MANIFEST_NAME, DELTA_NAME):
            body = data.read()
            self.bodies[entry.relpath] = body
            return hashlib.sha256(body).hexdigest()
        return _SKIPPED if data is not None else None


def inventory_of_archive(path: Path) -> Inventory:
    """The Inventory of a packed bundle (archive, parts manifest or part), read in one pass.

    Raises BadInput when it holds no kubeplay bundle, BundleError when it is damaged.
    """
    source = open_archive_source(path)
    indexes = _ArchiveIndexes()
    scan_archive(source, indexes)
    for required in (MANIFEST_NAME, SUMS_NAME):
        if required not in indexes.bodies:
            raise BadInput(f"{source.label}: not a packed kubeplay bundle (no {required})", hint=BASE_HINT)
    sums = parse_sha256sums(indexes.bodies[SUMS_NAME], f"{source.archive_name}:{SUMS_NAME}")
    if DELTA_NAME in indexes.bodies:
        content = parse_delta(indexes.bodies[DELTA_NAME], f"{source.archive_name}:{DELTA_NAME}").content
    else:
        content = {rel: Entry(sha256=digest, size=indexes.sizes.get(rel, 0)) for rel, digest in sums.items()}
    return make_inventory(f"archive {source.label}", [(indexes.bodies[MANIFEST_NAME], None)], _content_paths(content))


def load_base(path: Path) -> Inventory:
    """The Inventory of `path`: an inventory.json, a bundle directory, or a packed bundle.

    Raises BadInput naming `path` for anything else (missing, unreadable, some other file).
    """
    if path.is_dir():
        return inventory_of_directory(path)
    if path.name.endswith(PARTS_MANIFEST_SUFFIX) or not path.exists():
        if not path.exists() and not path.with_name(path.name + ".part000").exists():
            raise BadInput(f"{path}: no such file or directory", hint=BASE_HINT)
        return inventory_of_archive(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror}", hint=BASE_HINT) from None
    if head.lstrip()[:1] == b"{":
        return read_inventory(path)
    if detect_compression(head) is not None or path.name.rsplit(".", 1)[-1].startswith("part"):
        return inventory_of_archive(path)
    raise BadInput(f"{path}: neither an inventory.json, a bundle directory nor a packed bundle", hint=BASE_HINT)


def holds_content(path: Path) -> bool:
    """True when the base `path` is a bundle (directory or packed) rather than an inventory.json."""
    if path.is_dir() or path.name.endswith(PARTS_MANIFEST_SUFFIX) or not path.is_file():
        return True
    with path.open("rb") as fh:
        return fh.read(64).lstrip()[:1] != b"{"


def base_content_files(path: Path, wanted: Mapping[str, str], scratch: Path) -> dict[str, Path]:
    """Local copies of base files for patches: {bundle path: file} for each path of `wanted` (path ->
    sha256) that `path` (a bundle directory or a packed bundle) holds with that digest.

    A directory's files are used where they are; an archive's are extracted into `scratch` in one pass.
    Files whose digest differs are left out (a patch against other bytes would not apply on the deploy node).
    """
    if not wanted:
        return {}
    if path.is_dir():
        found: dict[str, Path] = {}
        for rel, digest in wanted.items():
            candidate = path / rel
            if candidate.is_file() and sha256_file(candidate) == digest:
                found[rel] = candidate
        return found
    return _extract_wanted(path, wanted, scratch)


def _extract_wanted(path: Path, wanted: Mapping[str, str], scratch: Path) -> dict[str, Path]:
    source = open_archive_source(path)
    scratch.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}

    def keep(entry: ArchiveEntry, data: IO[bytes] | None) -> str | None:
        if data is None:
            return None
        if entry.relpath not in wanted:
            return _SKIPPED
        fd, tmp = tempfile.mkstemp(dir=scratch, prefix="base-", suffix=".part")
        with os.fdopen(fd, "wb") as out:
            digest = hash_stream(data, out.write)
        if digest == wanted[entry.relpath]:
            found[entry.relpath] = Path(tmp)
        else:
            os.unlink(tmp)
        return digest

    try:
        scan_archive(source, keep)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return found


def describe_delta_base(record: DeltaRecord) -> str:
    """One line naming what a delta was built against."""
    versions = ", ".join(record.base.kube_versions) or "unknown versions"
    return f"{record.base.source} ({versions}; {len(record.base.identities)} bundle(s))"
