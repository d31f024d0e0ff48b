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
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubeplay.bundle.inventory import Entry
from kubeplay.errors import BundleError

DELTA_NAME = "delta.json"
DELTA_FORMAT = 1
PATCH_DIR = "patches"


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


def apply_patch(base: Path, patch: Path, dest: Path, sha256: str, size: int) -> None:
    """Rebuild a file from the base's copy and a zstd patch (`zstd --patch-from` equivalent), streaming
    the output and checking its digest; raise BundleError naming the file on any mismatch.

    The base is the decompressor's raw-content dictionary, so it is held in memory once (the size of one
    binary); the output is written in chunks."""
    import zstandard  # noqa: PLC0415

    dictionary = zstandard.ZstdCompressionDict(base.read_bytes(), dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    dctx = zstandard.ZstdDecompressor(dict_data=dictionary, max_window_size=1 << 31)
    h = hashlib.sha256()
    written = 0
    try:
        with patch.open("rb") as fi, dctx.stream_reader(fi) as reader, dest.open("wb") as fo:
            while chunk := reader.read(1 << 20):
                h.update(chunk)
                fo.write(chunk)
                written += len(chunk)
    except zstandard.ZstdError as exc:
        dest.unlink(missing_ok=True)
        raise BundleError(f"{patch}: not a patch of {base.name}: {exc}", hint="copy the delta again") from None
    if written != size or h.hexdigest() != sha256:
        dest.unlink(missing_ok=True)
        raise BundleError(
            f"{patch}: rebuilt {dest.name} does not match its listed sha256 {sha256[:12]} ({written} bytes)",
            hint="the patch or the base file differs from what the delta was built against; install the full bundle",
        )


def read_delta(bundle_dir: Path) -> DeltaRecord | None:
    """The bundle's delta.json, or None for a full bundle; raise BundleError when it is unreadable."""
    path = bundle_dir / DELTA_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        record = DeltaRecord.model_validate_json(raw)
    except ValidationError as exc:
        raise BundleError(f"{path}: invalid delta record: {exc.errors()[0]['msg']}", hint="rebuild the delta") from None
    if full_sums_sha256(record.content) != record.target.sums_sha256:
        raise BundleError(
            f"{path}: its content list does not match the full bundle's SHA256SUMS digest it names",
            hint="the delta was changed after it was built; rebuild it",
        )
    return record
