"""`kubeplay build --base BASE`: the delta bundle beside the full one, holding only what the base lacks.

The full bundle is built as always (it is the build's cache); the delta is then written as its own bundle
directory `<full bundle>-delta-<base tag>` next to it: the full bundle's kubeplay.json, install.sh,
config-sample.yaml and SBOM, delta.json (the base, and the full bundle's complete content list), and
every file whose digest the base lacks, hard-linked from the full bundle. A changed binary under files/
whose older version the base holds (and whose bytes are at hand: --base is a bundle, or --base-content
names one) may travel as a zstd patch against it instead, when that is smaller.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubeplay.bundle.base import base_content_files
from kubeplay.bundle.delta import (
    DELTA_NAME,
    PATCH_DIR,
    DeltaBase,
    DeltaPatch,
    DeltaRecord,
    DeltaTarget,
    base_tag,
    full_sums_sha256,
    make_patch,
)
from kubeplay.bundle.inventory import TOP_LEVEL_OWN, Entry, Inventory, bundle_ref
from kubeplay.bundle.manifest import BUILD_STATE_DIR, MANIFEST_NAME, SUMS_NAME, read_sha256sums, write_sha256sums
from kubeplay.bundle.sbom import SBOM_NAME
from kubeplay.console import Output, human_bytes
from kubeplay.errors import BadInput, BundleError
from kubeplay.state import atomic_write

# Always in a delta, whatever the base holds: the full bundle's own files (its SBOM describes the result).
ALWAYS_CARRIED = (TOP_LEVEL_OWN | {SBOM_NAME}) - {DELTA_NAME}
# Compressed bytes change throughout when what they hold changes: a patch against the old ones saves little.
_COMPRESSED = (".gz", ".tgz", ".xz", ".zst", ".bz2", ".zip", ".rpm", ".deb", ".whl")
_VERSION = re.compile(r"\d+(?:\.\d+)+")
PATCH_MIN_SIZE = 64 << 10  # smaller files travel whole: a patch cannot save much


@dataclass
class DeltaResult:
    """The delta bundle written: where, its record, and the digest of its SHA256SUMS."""

    path: Path
    record: DeltaRecord
    sums_sha256: str
    files: int

    @property
    def ratio(self) -> float:
        return self.record.carried_size / self.record.full_size if self.record.full_size else 1.0


def full_content(bundle_dir: Path) -> dict[str, Entry]:
    """A finished bundle's content: every SHA256SUMS path with its digest and size."""
    sums = read_sha256sums(bundle_dir / SUMS_NAME)
    return {rel: Entry(sha256=digest, size=(bundle_dir / rel).stat().st_size) for rel, digest in sums.items()}


def select_carried(content: Mapping[str, Entry], base: Inventory) -> dict[str, Entry]:
    """The files of `content` a delta against `base` carries: the bundle's own, and every digest the base lacks."""
    digests = base.digests()
    return {rel: e for rel, e in content.items() if rel in ALWAYS_CARRIED or e.sha256 not in digests}


def similarity_key(path: str) -> str | None:
    """`path` with its version numbers replaced (files/…/v1.35.4/…/kubelet -> files/…/v*/…/kubelet), for
    finding the base's older copy of a file; None for files that are not patched."""
    if not path.startswith("files/") or path.endswith(_COMPRESSED):
        return None
    return _VERSION.sub("*", path)


def patch_candidates(carried: Mapping[str, Entry], base: Inventory) -> dict[str, tuple[str, Entry]]:
    """{carried path: (base path, base entry)}: the base file each carried file may be patched against, the
    same path but for its version numbers (of several, the closest in size)."""
    by_key: dict[str, list[tuple[str, Entry]]] = {}
    for rel, entry in base.paths.items():
        key = similarity_key(rel)
        if key is not None and entry.size >= PATCH_MIN_SIZE:
            by_key.setdefault(key, []).append((rel, entry))
    found: dict[str, tuple[str, Entry]] = {}
    for rel, entry in carried.items():
        key = similarity_key(rel)
        if key is None or entry.size < PATCH_MIN_SIZE or key not in by_key:
            continue
        found[rel] = min(by_key[key], key=lambda c: (abs(c[1].size - entry.size), c[0]))
    return found


def _link_or_copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
    except OSError:  # another file system, or links not allowed there: a copy holds the same bytes
        shutil.copy2(source, dest)


def delta_dir_for(full_dir: Path, base: Inventory) -> Path:
    """Where the delta of `full_dir` against `base` goes: beside it, `<name>-delta-<base tag>`."""
    return full_dir.parent / f"{full_dir.name}-delta-{base_tag(base.identities)}"


def _make_patches(
    full_dir: Path,
    staging: Path,
    carried: Mapping[str, Entry],
    base: Inventory,
    base_content: Path,
    out: Output,
) -> list[DeltaPatch]:
    """Patches for the carried files whose older version `base_content` holds, where smaller than the file.

    Made patches are kept in the build state directory, so an unchanged re-run does not make them again."""
    candidates = patch_candidates(carried, base)
    state = full_dir / BUILD_STATE_DIR
    local = base_content_files(
        base_content, {b: e.sha256 for b, e in candidates.values()}, state / f"delta-base-{uuid.uuid4().hex[:8]}"
    )
    patches: list[DeltaPatch] = []
    try:
        for rel, (base_rel, base_entry) in sorted(candidates.items()):
            if base_rel not in local:
                continue
            entry = carried[rel]
            cached = state / "patches" / f"{base_entry.sha256}-{entry.sha256}.zst"
            if not cached.is_file():
                with out.status(f"patch for {rel} against {base_rel}"):
                    make_patch(local[base_rel], full_dir / rel, cached)
            size = cached.stat().st_size
            if size >= entry.size:
                out.info(f"{rel}: a patch would be {human_bytes(size)}, not smaller; carried whole")
                continue
            patch_rel = f"{PATCH_DIR}/{entry.sha256}.zst"
            _link_or_copy(cached, staging / patch_rel)
            patches.append(
                DeltaPatch(
                    path=rel, sha256=entry.sha256, size=entry.size, base_sha256=base_entry.sha256, patch=patch_rel
                )
            )
            out.info(f"{rel}: patch against {base_rel}, {human_bytes(size)} instead of {human_bytes(entry.size)}")
    finally:  # base files extracted from an archive for this run
        for scratch in state.glob("delta-base-*"):
            shutil.rmtree(scratch, ignore_errors=True)
    return patches


def write_delta(full_dir: Path, base: Inventory, *, base_content: Path | None, out: Output) -> DeltaResult:
    """Write the delta of the finished bundle `full_dir` against `base` beside it; return what was written.

    `base_content` (a bundle directory or packed bundle holding base files) allows patches. The delta
    directory is written under a temporary name and renamed into place, replacing an earlier delta of the
    same name. Raises BadInput when that name is taken by something else, BundleError when `full_dir`'s
    SHA256SUMS is not the one its content list rebuilds.
    """
    content = full_content(full_dir)
    manifest_body = (full_dir / MANIFEST_NAME).read_bytes()
    sums_body = (full_dir / SUMS_NAME).read_bytes()
    sums_sha256 = hashlib.sha256(sums_body).hexdigest()
    if full_sums_sha256(content) != sums_sha256:
        raise BundleError(
            f"{full_dir / SUMS_NAME}: not in the sorted form a build writes, so a delta could not prove base + delta",
            hint="run `kubeplay build` again to rewrite it",
        )
    ref = bundle_ref(manifest_body)
    dest = delta_dir_for(full_dir, base)
    if dest.exists() and not (dest / DELTA_NAME).is_file():
        raise BadInput(f"{dest}: exists and is not a delta bundle", hint="move it away; the delta is written there")
    carried = select_carried(content, base)
    staging = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        patches = _make_patches(full_dir, staging, carried, base, base_content, out) if base_content else []
        patched = {p.path for p in patches}
        for rel in carried:
            if rel not in patched:
                _link_or_copy(full_dir / rel, staging / rel)
        patch_bytes = sum((staging / p.patch).stat().st_size for p in patches)
        record = DeltaRecord(
            target=DeltaTarget(
                identity=ref.identity,
                kube_version=ref.kube_version,
                kubespray_version=ref.kubespray_version,
                sums_sha256=sums_sha256,
            ),
            base=DeltaBase(
                identities=base.identities,
                kube_versions=[b.kube_version for b in base.bundles],
                source=base.source,
            ),
            content=dict(sorted(content.items())),
            patches=patches,
            carried_size=sum(e.size for rel, e in carried.items() if rel not in patched) + patch_bytes,
            full_size=sum(e.size for e in content.values()),
        )
        atomic_write(staging / DELTA_NAME, record.model_dump_json(indent=1).encode() + b"\n")
        known = {rel: e.sha256 for rel, e in carried.items() if rel not in patched}
        known.update({p.patch: hashlib.sha256((staging / p.patch).read_bytes()).hexdigest() for p in patches})
        delta_sums = write_sha256sums(staging, use_cache=False, known=known)
        files = len(read_sha256sums(staging / SUMS_NAME))
        _replace_dir(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return DeltaResult(dest, record, delta_sums, files)


def _replace_dir(new: Path, dest: Path) -> None:
    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
    if dest.exists():
        os.rename(dest, old)
    os.rename(new, dest)
    shutil.rmtree(old, ignore_errors=True)
