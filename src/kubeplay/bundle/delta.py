"""`delta.json`: what makes a bundle a delta, and the proof that base + delta = the full new bundle.

A delta bundle has the full new bundle's own `kubeplay.json` (so the same identity), an `install.sh`, a
`config-sample.yaml`, and only the content its base lacks; its `SHA256SUMS` (and signature) covers what
it carries, `delta.json` included. `delta.json` names the base (the identities of the bundles the base
inventory listed) and lists the complete content of the full bundle, path by path with digest and size,
so the deploy node can take the rest from what it already serves and check, digest for digest, that the
result is the full bundle. A changed binary may travel as a zstd patch against the base's copy of a
file (`patches`); the deploy node rebuilds it and checks its digest before anything is served.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import zstandard
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubeplay.bundle.inventory import Entry
from kubeplay.bundle.manifest import MANIFEST_NAME, SIGNATURE_NAME, SUMS_NAME
from kubeplay.errors import BundleError

DELTA_NAME = "delta.json"
DELTA_FORMAT = 1
PATCH_DIR = "patches"
# zstd --patch-from at -19, with match tables big enough to index the whole base file (level 19's own
# index only its last few MiB: a kubectl patch is then twice as large); the window covers base + file.
PATCH_LEVEL = 19
PATCH_MAX_WINDOW_LOG = 31
_CHUNK = 1 << 20


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeltaBase(_Model):
    identities: list[str] = Field(description="the bundles the base inventory listed (sha256 of kubeplay.json)")
    kube_versions: list[str] = Field(default_factory=list)
    source: str = Field(description="the inventory, bundle directory or archive the delta was built against")


class DeltaTarget(_Model):
    identity: str = Field(description="sha256 of the full bundle's kubeplay.json (carried in the delta)")
    kube_version: str
    kubespray_version: str
    sums_sha256: str = Field(description="sha256 of the full bundle's SHA256SUMS, rebuilt from `content`")


class DeltaPatch(_Model):
    path: str = Field(description="bundle-relative path of the file the patch rebuilds")
    sha256: str = Field(description="digest of the rebuilt file")
    size: int
    base_sha256: str = Field(description="digest of the base's file the patch applies to (zstd --patch-from)")
    patch: str = Field(description="bundle-relative path of the patch in the delta, patches/<sha256>.zst")


class DeltaRecord(_Model):
    format: int = DELTA_FORMAT
    target: DeltaTarget
    base: DeltaBase
    content: dict[str, Entry] = Field(description="the full bundle: every SHA256SUMS path, digest and size")
    patches: list[DeltaPatch] = Field(default_factory=list)
    carried_size: int = Field(default=0, description="bytes the delta carries (files and patches)")
    full_size: int = Field(default=0, description="bytes of the full bundle's files")


def full_sums_text(content: dict[str, Entry]) -> bytes:
    """The full bundle's SHA256SUMS, exactly as a full build writes it (sorted by path)."""
    return "".join(f"{e.sha256}  {rel}\n" for rel, e in sorted(content.items())).encode()


def full_sums_sha256(content: dict[str, Entry]) -> str:
    return hashlib.sha256(full_sums_text(content)).hexdigest()


def parse_delta(body: bytes, origin: str) -> DeltaRecord:
    """delta.json bytes as a DeltaRecord; raise BundleError naming `origin` when invalid or inconsistent."""
    try:
        record = DeltaRecord.model_validate_json(body)
    except ValidationError as exc:
        raise BundleError(
            f"{origin}: invalid delta record: {exc.errors()[0]['msg']}", hint="rebuild the delta"
        ) from None
    if full_sums_sha256(record.content) != record.target.sums_sha256:
        raise BundleError(
            f"{origin}: its content list does not match the full bundle's SHA256SUMS digest it names",
            hint="the delta was changed after it was built; rebuild it",
        )
    return record


def read_delta(bundle_dir: Path) -> DeltaRecord | None:
    """The bundle's delta.json, or None for a full bundle; raise BundleError when it is unreadable."""
    path = bundle_dir / DELTA_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_delta(raw, str(path))


def base_tag(identities: list[str]) -> str:
    """12 hex digits naming a delta's base: the base bundle's identity, or a digest of several."""
    if len(identities) == 1:
        return identities[0][:12]
    return hashlib.sha256("\n".join(sorted(identities)).encode()).hexdigest()[:12]


def delta_suffix(record: DeltaRecord) -> str:
    """What a delta's directory and archive names add to the full bundle's: `-delta-<base tag>`."""
    return f"-delta-{base_tag(record.base.identities)}"


def delta_findings(record: DeltaRecord, sums: Mapping[str, str], present: Mapping[str, str]) -> list[str]:
    """What is wrong with a delta bundle whose SHA256SUMS is `sums` and whose files hash to `present`:
    a carried file the content list disagrees with, a patch that is not carried, a kubeplay.json that is
    not the target's. Missing and changed files are found through SHA256SUMS by the caller."""
    found: list[str] = []
    own = {SUMS_NAME, SIGNATURE_NAME, DELTA_NAME}
    if present.get(MANIFEST_NAME, record.target.identity) != record.target.identity:
        found.append(f"{MANIFEST_NAME}: not the bundle {DELTA_NAME} names (identity {record.target.identity})")
    patches = {p.patch for p in record.patches}
    for path in sorted(sums):
        if path in own or path in patches:
            continue
        entry = record.content.get(path)
        if entry is None:
            found.append(f"{path}: carried, but not in {DELTA_NAME}'s content list")
        elif entry.sha256 != sums[path]:
            found.append(f"{path}: {SUMS_NAME} says sha256 {sums[path]}, {DELTA_NAME} says {entry.sha256}")
    if DELTA_NAME not in sums:
        found.append(f"{DELTA_NAME}: not listed in {SUMS_NAME}")
    for patch in record.patches:
        if patch.patch not in sums:
            found.append(f"{patch.patch}: a patch {DELTA_NAME} lists for {patch.path}, not carried")
        entry = record.content.get(patch.path)
        if entry is None or entry.sha256 != patch.sha256:
            found.append(f"{patch.patch}: rebuilds {patch.path}, which the content list has with another digest")
    return found


def patch_window_log(base_size: int, size: int) -> int:
    """The zstd window (log2) a patch of a `size`-byte file against a `base_size`-byte base needs."""
    return min(PATCH_MAX_WINDOW_LOG, max(20, (base_size + size).bit_length()))


def patch_parameters(base_size: int, size: int) -> zstandard.ZstdCompressionParameters:
    """Compression parameters for a patch: level 19, window over base + file, tables that index all of it
    (chain 2^(window-1), hash 2^(window-3) entries: about 350 MB of tables for a 60 MB binary)."""
    window = patch_window_log(base_size, size)
    return zstandard.ZstdCompressionParameters.from_level(
        PATCH_LEVEL,
        source_size=size,
        dict_size=base_size,
        window_log=window,
        chain_log=min(window - 1, 30),
        hash_log=min(window - 3, 30),
        write_checksum=1,
        write_content_size=1,
    )


def make_patch(base_path: Path, new_path: Path, dest: Path) -> int:
    """Write `dest`, the zstd frame that rebuilds `new_path` from `base_path` (`zstd --patch-from`);
    return its size. Both files are read whole: patches are made for single binaries, not archives."""
    base = base_path.read_bytes()
    size = new_path.stat().st_size
    params = patch_parameters(len(base), size)
    dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    dictionary.precompute_compress(compression_params=params)
    compressor = zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, new_path.open("rb") as src:
            compressor.copy_stream(src, out, size=size)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest.stat().st_size


def apply_patch(base_path: Path, patch_path: Path, dest: Path, expected_sha256: str, size: int) -> None:
    """Rebuild a file from the base's copy and a zstd patch into `dest`, streaming; `dest` appears only when
    the result has `size` bytes and sha256 `expected_sha256`.

    Raises BundleError naming `dest` (and the patch) when the patch is damaged, made against another
    base file, or rebuilds other bytes; nothing is left behind then.
    """
    try:
        base = base_path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{base_path}: cannot read the base file of {patch_path.name}: {exc.strerror}") from None
    dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    decompressor = zstandard.ZstdDecompressor(dict_data=dictionary, max_window_size=1 << PATCH_MAX_WINDOW_LOG)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    digest = hashlib.sha256()
    written = 0
    try:
        with os.fdopen(fd, "wb") as out, patch_path.open("rb") as src, decompressor.stream_reader(src) as reader:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                written += len(chunk)
                if written > size:
                    break
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if written != size or digest.hexdigest() != expected_sha256:
            raise BundleError(
                f"{dest}: the patch {patch_path} rebuilt {written} bytes with sha256 {digest.hexdigest()}, "
                f"expected {size} bytes with sha256 {expected_sha256}",
                hint="the patch or the base file differs from what the delta was built against; rebuild the delta",
            )
        os.replace(tmp, dest)
    except zstandard.ZstdError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise BundleError(
            f"{dest}: the patch {patch_path} does not apply to {base_path}: {exc}",
            hint="the patch was damaged or made against another base file; copy the delta again or rebuild it",
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
