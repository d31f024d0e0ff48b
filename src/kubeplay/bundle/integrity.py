"""Compare what a bundle holds with what it says it holds: SHA256SUMS, kubeplay.json, registry blob names.

Pure comparison on data: the caller hashes the files (from a directory walk or an archive stream) and
passes the digests in; the result lists missing, extra and changed files by bundle-relative path.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from kubeplay.bundle.manifest import (
    BUILD_STATE_DIR,
    MANIFEST_NAME,
    PART_SUFFIX,
    SIGNATURE_NAME,
    SUMS_NAME,
    BundleManifest,
    read_sha256sums,
)
from kubeplay.errors import BundleError

# registry/docker/registry/v2/blobs/sha256/<2>/<hex>/data: the path names the digest of its content.
_BLOB_RE = re.compile(r"^registry/docker/registry/v2/blobs/sha256/([0-9a-f]{2})/([0-9a-f]{64})/data$")
REPORT_LIMIT = 40


def is_packed_path(relpath: str) -> bool:
    """True for paths that travel with the bundle (everything but build state and unfinished downloads)."""
    return relpath.split("/", 1)[0] != BUILD_STATE_DIR and not relpath.endswith(PART_SUFFIX)


@dataclass
class IntegrityReport:
    """Findings by bundle-relative path; `ok` when there are none."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.changed or self.problems)

    def lines(self) -> list[str]:
        out: list[str] = []
        for label, paths in (
            ("changed", self.changed),
            ("missing", self.missing),
            ("extra", self.extra),
            ("problem", self.problems),
        ):
            out.extend(f"{label}: {p}" for p in paths[:REPORT_LIMIT])
            if len(paths) > REPORT_LIMIT:
                out.append(f"{label}: … and {len(paths) - REPORT_LIMIT} more")
        return out

    def render(self) -> str:
        return "\n".join("  " + line for line in self.lines())

    def counts(self) -> str:
        return (
            f"{len(self.changed)} changed, {len(self.missing)} missing, {len(self.extra)} extra, "
            f"{len(self.problems)} other problems"
        )


def parse_sha256sums(body: bytes, origin: str) -> dict[str, str]:
    """SHA256SUMS bytes (read from an archive stream) as {path: digest}, via the manifest module's reader."""
    with tempfile.TemporaryDirectory(prefix="kubeplay-sums-") as tmp:
        path = Path(tmp) / SUMS_NAME
        path.write_bytes(body)
        try:
            return read_sha256sums(path)
        except BundleError as exc:
            raise BundleError(exc.message.replace(str(path), origin), exc.hint) from None


def parse_manifest(body: bytes, origin: str) -> BundleManifest:
    try:
        return BundleManifest.model_validate_json(body)
    except ValidationError as exc:
        raise BundleError(f"{origin}: invalid manifest: {exc.errors()[0]['msg']}", hint="rebuild the bundle") from None


def compare_digests(
    sums: Mapping[str, str],
    actual: Mapping[str, str],
    symlinks: Mapping[str, str] | None = None,
    manifest: BundleManifest | None = None,
) -> IntegrityReport:
    """Findings for file digests `actual` against `sums` (SHA256SUMS) and `manifest` (kubeplay.json)."""
    report = IntegrityReport(checked=len(actual))
    present = {p: d for p, d in actual.items() if is_packed_path(p) and p not in (SUMS_NAME, SIGNATURE_NAME)}
    for path in sorted(sums):
        digest = present.get(path)
        if digest is None:
            report.missing.append(path)
        elif digest != sums[path]:
            report.changed.append(f"{path} (sha256 {digest}, SHA256SUMS says {sums[path]})")
    report.extra.extend(sorted(p for p in present if p not in sums))
    for path, target in sorted((symlinks or {}).items()):
        if is_packed_path(path):
            report.extra.append(f"{path} (symlink to {target}; bundles hold regular files only)")
    for path, digest in sorted(present.items()):
        blob = _BLOB_RE.match(path)
        if blob and (blob[2][:2] != blob[1] or digest != blob[2]):
            report.changed.append(f"{path} (registry blob content has sha256 {digest})")
    if manifest is not None:
        report.problems.extend(_manifest_findings(manifest, sums, present))
    return report


def _manifest_findings(manifest: BundleManifest, sums: Mapping[str, str], present: Mapping[str, str]) -> list[str]:
    found: list[str] = []
    for record in manifest.files:
        if record.path not in present:
            continue  # reported as missing through SHA256SUMS, or below when SHA256SUMS lacks it too
        if record.path not in sums:
            found.append(f"{record.path}: listed in {MANIFEST_NAME} but not in {SUMS_NAME}")
        if present[record.path] != record.sha256.lower().removeprefix("sha256:"):
            found.append(f"{record.path}: sha256 differs from {MANIFEST_NAME} ({record.sha256})")
    for record in manifest.files:
        if record.path not in present and record.path not in sums:
            found.append(f"{record.path}: listed in {MANIFEST_NAME}, missing from the bundle and {SUMS_NAME}")
    blobs = {m[2] for p in present if (m := _BLOB_RE.match(p))}
    for image in manifest.images:
        digests = [image.digest, *([image.cut_index] if image.cut_index else []), *(p.digest for p in image.platforms)]
        for digest in digests:
            hexdigest = digest.removeprefix("sha256:")
            if hexdigest not in blobs:
                found.append(f"image {image.name} ({image.repository}): manifest {digest} not in registry/")
    return found


def check_bundle_digests(bundle: Path, actual: Mapping[str, str], symlinks: Mapping[str, str]) -> IntegrityReport:
    """Compare digests of an extracted bundle at `bundle` with its own SHA256SUMS and kubeplay.json."""
    sums_path = bundle / SUMS_NAME
    manifest_path = bundle / MANIFEST_NAME
    if not sums_path.is_file():
        return IntegrityReport(checked=len(actual), problems=[f"{SUMS_NAME}: missing; this is not a kubeplay bundle"])
    sums = read_sha256sums(sums_path)
    manifest = parse_manifest(manifest_path.read_bytes(), MANIFEST_NAME) if manifest_path.is_file() else None
    report = compare_digests(sums, actual, symlinks, manifest)
    if manifest is None:
        report.problems.append(f"{MANIFEST_NAME}: missing")
    return report
