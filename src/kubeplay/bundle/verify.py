"""`kubeplay verify`: recompute every digest of a bundle directory, archive or split parts.

A directory is walked and hashed file by file; an archive is streamed once through the decompressor
without touching the disk. Both end in the same comparison (`integrity.compare_digests`) against the
bundle's own SHA256SUMS and kubeplay.json, plus the archive's `.sha256` or parts manifest when present.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kubeplay.bundle.delta import DELTA_NAME, DeltaRecord, parse_delta, read_delta
from kubeplay.bundle.extract import ArchiveEntry, frame_content_size, hash_stream, scan_archive
from kubeplay.bundle.integrity import (
    IntegrityReport,
    compare_digests,
    is_packed_path,
    parse_manifest,
    parse_sha256sums,
)
from kubeplay.bundle.manifest import BUILD_STATE_DIR, MANIFEST_NAME, SIGNATURE_NAME, SUMS_NAME, read_sha256sums
from kubeplay.bundle.parts import PARTS_MANIFEST_SUFFIX, ArchiveSource, open_archive_source, parts_manifest_name
from kubeplay.bundle.trust import Signer, check_signature
from kubeplay.errors import BadInput

Progress = Callable[[int, int], None]


@dataclass
class VerifyResult:
    """What was verified and what was found; `sums_sha256` is the digest the build printed for SHA256SUMS."""

    kind: str
    label: str
    report: IntegrityReport
    size: int
    sums_sha256: str | None
    archive_sha256: str | None = None
    signer: Signer | None = None
    delta: DeltaRecord | None = None  # the delta.json of a delta bundle

    @property
    def ok(self) -> bool:
        return self.report.ok


def _walk_directory(root: Path) -> tuple[list[str], dict[str, str], list[str]]:
    files: list[str] = []
    symlinks: dict[str, str] = {}
    odd: list[str] = []
    for current, dirs, names in os.walk(root):
        rel_dir = os.path.relpath(current, root)
        if rel_dir == ".":
            dirs[:] = [d for d in dirs if d != BUILD_STATE_DIR]
        for name in sorted(dirs) + sorted(names):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            st = os.lstat(os.path.join(current, name))
            if stat.S_ISLNK(st.st_mode):
                symlinks[rel] = os.readlink(os.path.join(current, name))
            elif stat.S_ISREG(st.st_mode):
                files.append(rel)
            elif not stat.S_ISDIR(st.st_mode):
                odd.append(f"{rel}: not a regular file (device, fifo or socket)")
    return sorted(files), symlinks, odd


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def verify_directory(
    root: Path, on_progress: Progress | None = None, allowed_signers: Path | None = None
) -> VerifyResult:
    """Check SHA256SUMS.sig first when `allowed_signers` is given, then hash every file below `root` and
    compare with its SHA256SUMS and kubeplay.json. Raises UntrustedBundle for a missing or refused signature."""
    if not (root / SUMS_NAME).is_file() and not (root / MANIFEST_NAME).is_file():
        raise BadInput(f"{root}: not a kubeplay bundle (no {SUMS_NAME} or {MANIFEST_NAME})")
    signer = None
    if allowed_signers is not None:
        sums_body = (root / SUMS_NAME).read_bytes() if (root / SUMS_NAME).is_file() else b""
        signer = check_signature(sums_body, _read_text(root / SIGNATURE_NAME), allowed_signers, str(root))
    files, symlinks, odd = _walk_directory(root)
    total = sum((root / f).stat().st_size for f in files if is_packed_path(f))
    done = 0
    digests: dict[str, str] = {}
    for rel in files:
        if not is_packed_path(rel):
            continue
        with (root / rel).open("rb") as fh:
            digests[rel] = hash_stream(fh)
        done += (root / rel).stat().st_size
        if on_progress is not None:
            on_progress(done, total)
    sums_path = root / SUMS_NAME
    sums = read_sha256sums(sums_path) if sums_path.is_file() else {}
    manifest_path = root / MANIFEST_NAME
    manifest = parse_manifest(manifest_path.read_bytes(), str(manifest_path)) if manifest_path.is_file() else None
    delta = read_delta(root)
    report = compare_digests(sums, digests, symlinks, manifest, delta)
    report.problems.extend(odd)
    _note_missing_indexes(report, sums_path.is_file(), manifest is not None)
    sums_sha256 = hashlib.sha256(sums_path.read_bytes()).hexdigest() if sums_path.is_file() else None
    kind = "delta directory" if delta is not None else "directory"
    return VerifyResult(kind, str(root), report, total, sums_sha256, signer=signer, delta=delta)


def _note_missing_indexes(report: IntegrityReport, has_sums: bool, has_manifest: bool) -> None:
    if not has_sums:
        report.problems.append(f"{SUMS_NAME}: missing, so no file could be checked")
    if not has_manifest:
        report.problems.append(f"{MANIFEST_NAME}: missing")


class _CaptureIndexes:
    """Archive visitor that keeps the bytes of SHA256SUMS, kubeplay.json (and delta.json) and reports progress."""

    def __init__(self, on_progress: Progress | None, total: int) -> None:
        self.bodies: dict[str, bytes] = {}
        self.on_progress = on_progress
        self.total = total
        self.done = 0

    def __call__(self, entry: ArchiveEntry, data: IO[bytes] | None) -> str | None:
        self.done += entry.info.size
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)
        if data is not None and entry.relpath in (SUMS_NAME, MANIFEST_NAME, SIGNATURE_NAME, DELTA_NAME):
            body = data.read()
            self.bodies[entry.relpath] = body
            return hashlib.sha256(body).hexdigest()
        return None


def _digest_files_beside(path: Path) -> list[Path]:
    """The digest files `kubeplay pack` writes for the archive `path` names: `.sha256` and `.parts.json`."""
    name = path.name
    part = re.match(r"^(?P<archive>.+)\.part\d{3,}$", name)
    if part:
        name = part["archive"]
    if name.endswith(PARTS_MANIFEST_SUFFIX):
        return [path.with_name(name)]
    return [path.with_name(name + ".sha256"), path.with_name(parts_manifest_name(name))]


def _check_beside(path: Path, allowed_signers: Path) -> None:
    """The signatures beside an archive (`<archive>.sha256.sig`, `<stem>.parts.json.sig`), those present,
    checked before the digest files are even parsed."""
    for digests in _digest_files_beside(path):
        text = _read_text(digests.with_name(digests.name + ".sig"))
        if text is not None:
            check_signature(digests.read_bytes() if digests.is_file() else b"", text, allowed_signers, digests.name)


def verify_archive(
    source: ArchiveSource, on_progress: Progress | None = None, allowed_signers: Path | None = None
) -> VerifyResult:
    """Stream the archive (or its parts) once, hashing every member; nothing is written to disk.

    With `allowed_signers`, the SHA256SUMS.sig inside it is checked before any digest is compared
    (UntrustedBundle when refused)."""
    capture = _CaptureIndexes(on_progress, frame_content_size(source) or 0)
    scan = scan_archive(source, capture)
    sums_body = capture.bodies.get(SUMS_NAME)
    manifest_body = capture.bodies.get(MANIFEST_NAME)
    signer = None
    if allowed_signers is not None:
        sig_body = capture.bodies.get(SIGNATURE_NAME)
        sig_text = sig_body.decode(errors="replace") if sig_body is not None else None
        signer = check_signature(sums_body or b"", sig_text, allowed_signers, source.label)
    sums = parse_sha256sums(sums_body, f"{source.archive_name}:{SUMS_NAME}") if sums_body is not None else {}
    manifest = parse_manifest(manifest_body, f"{source.archive_name}:{MANIFEST_NAME}") if manifest_body else None
    delta_body = capture.bodies.get(DELTA_NAME)
    delta = parse_delta(delta_body, f"{source.archive_name}:{DELTA_NAME}") if delta_body is not None else None
    report = compare_digests(sums, scan.digests, scan.symlinks, manifest, delta)
    _note_missing_indexes(report, sums_body is not None, manifest is not None)
    sums_sha256 = hashlib.sha256(sums_body).hexdigest() if sums_body is not None else None
    kind = "split archive" if source.split else "archive"
    kind = f"delta {kind}" if delta is not None else kind
    return VerifyResult(kind, source.label, report, capture.done, sums_sha256, source.actual_sha256, signer, delta)


def verify_signature(root: Path, allowed_signers: Path) -> Signer:
    """Who signed the bundle directory `root`, checking SHA256SUMS.sig alone (no file digests).

    Raises BadInput when `root` is not a bundle directory, UntrustedBundle when the signature is refused.
    """
    if not (root / SUMS_NAME).is_file():
        raise BadInput(f"{root}: not a kubeplay bundle directory (no {SUMS_NAME})")
    return check_signature(
        (root / SUMS_NAME).read_bytes(), _read_text(root / SIGNATURE_NAME), allowed_signers, str(root)
    )


def verify_bundle(
    path: Path,
    on_progress: Progress | None = None,
    *,
    expected_sums_sha256: str | None = None,
    allowed_signers: Path | None = None,
) -> VerifyResult:
    """Verify a bundle directory, archive, parts manifest or part; raise BadInput when `path` is none of them.

    `expected_sums_sha256` is the SHA256SUMS digest the build printed: with it, a SHA256SUMS rewritten
    to match tampered files is caught too. Damaged archives raise BundleError (exit 1) naming the
    archive or part and the member being read. With `allowed_signers`, an unsigned bundle, a signature
    that does not verify or a signer the file does not allow raises UntrustedBundle (exit 2).
    """
    if path.is_dir():
        result = verify_directory(path, on_progress, allowed_signers)
    elif not path.exists() and not path.with_name(parts_manifest_name(path.name)).exists():
        raise BadInput(f"{path}: no such file or directory", hint="pass a bundle directory, .tar.zst or .parts.json")
    else:
        if allowed_signers is not None:
            _check_beside(path, allowed_signers)
        result = verify_archive(open_archive_source(path), on_progress, allowed_signers)
    expected = expected_sums_sha256.lower().removeprefix("sha256:") if expected_sums_sha256 else None
    if expected is not None and result.sums_sha256 != expected:
        result.report.problems.append(
            f"{SUMS_NAME}: sha256 {result.sums_sha256}, but the build printed {expected}; the list itself was changed"
        )
    return result
