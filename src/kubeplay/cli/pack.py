"""`kubeplay pack DIR` and `kubeplay extract ARCHIVE`: a bundle directory to one archive (or parts) and back."""

# ruff: noqa: PLC0415  (kubeplay subpackages are imported in the command that uses them: fast start-up)

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kubeplay import settings
from kubeplay.bundle.compression import Compression
from kubeplay.cli.output import command_output
from kubeplay.console import Output, human_bytes

if TYPE_CHECKING:
    from kubeplay.bundle.sshsig import PrivateKey

SPLIT_HELP = (
    "Write numbered parts of at most this size plus a parts manifest: K/M/G/T are powers of 1024, "
    "KB/MB/GB/TB powers of 1000. FAT32 holds files up to 4 GiB minus one byte: use 4GB there, not 4G."
)
COMPRESSION_HELP = (
    "zstd: smaller and faster, but the air-gapped side needs the `zstd` binary (or kubeplay) to unpack it. "
    "gzip: .tar.gz that plain `tar xzf` unpacks anywhere (uses pigz when installed)."
)


def pack(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Argument(help="The bundle directory `kubeplay build` wrote.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            envvar=settings.PACK_OUTPUT,
            help="Directory for the archive (default: beside the bundle).",
        ),
    ] = None,
    split_size: Annotated[str | None, typer.Option("--split-size", envvar=settings.SPLIT_SIZE, help=SPLIT_HELP)] = None,
    compression: Annotated[
        Compression,
        typer.Option("--compression", envvar=settings.PACK_COMPRESSION, case_sensitive=False, help=COMPRESSION_HELP),
    ] = Compression.ZSTD,
    level: Annotated[
        int | None,
        typer.Option(
            "--level",
            min=1,
            max=19,
            envvar=[settings.PACK_LEVEL, settings.ZSTD_LEVEL],
            help="Compression level, speed vs size: zstd 1-19 (default 3), gzip 1-9 (default 6).",
        ),
    ] = None,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign",
            metavar="KEY",
            help="Sign the archive's digest file (.sha256, or .parts.json when split) with this SSH private key.",
        ),
    ] = None,
) -> None:
    """Stream a bundle directory into kubeplay-<kube_version>-<arches>.tar.zst (or .tar.gz), checking every file."""
    signing_key = None
    if sign_key is not None:
        from kubeplay.cli.sign import signing_key as read_signing_key

        signing_key = read_signing_key(sign_key)
    pack_and_report(
        command_output(ctx),
        bundle,
        output,
        split_size=split_size,
        compression=compression,
        level=level,
        signing_key=signing_key,
    )


def pack_and_report(
    out: Output,
    bundle: Path,
    output: Path | None,
    *,
    split_size: str | None = None,
    compression: Compression = Compression.ZSTD,
    level: int | None = None,
    signing_key: PrivateKey | None = None,
) -> None:
    """`kubeplay pack` (also run by `kubeplay build --pack`): pack, then print what to do with the archive.

    With `signing_key`, the archive's digest file gets a `.sig` beside it; without, a stale one is removed.
    """
    from kubeplay.bundle.pack import pack_checked_bundle, unpack_commands
    from kubeplay.bundle.parts import parse_size

    split = parse_size(split_size) if split_size else None
    target = output if output is not None else bundle.resolve().parent
    with out.byte_progress("packing") as progress:
        result = pack_checked_bundle(
            bundle, target, split_size=split, compression=compression, level=level, on_progress=progress
        )
    written = result.parts if result.parts else [result.archive]
    for path in written:
        out.event("written", path=str(path), size=path.stat().st_size)
    if result.parts_manifest is not None:
        out.info(f"{len(result.parts)} parts; parts manifest {result.parts_manifest}")
    digest_file = result.parts_manifest or result.sha256_file
    if signing_key is not None:
        from kubeplay.bundle.trust import sign_file

        out.info(f"signed: {sign_file(digest_file, signing_key)}")
    else:
        digest_file.with_name(digest_file.name + ".sig").unlink(missing_ok=True)  # it signed an earlier archive
    out.info(f"sha256 {result.sha256}  ({result.sha256_file.name})")
    commands = unpack_commands(result)
    if not out.quiet:
        where = "the parts" if result.parts else result.archive.name
        out.info(
            f"on the air-gapped side, in the directory holding {where} and the .sha256 files, check and unpack with plain tools:"
        )
        for command in commands:
            out.line(f"  {command}")  # one physical line: the operator copies it as it is
        if result.compression is Compression.ZSTD:
            out.info("  (needs the zstd binary, missing on a minimal Debian; `--compression gzip` needs only tar)")
    out.event(
        "packed",
        archive=str(result.archive),
        sha256=result.sha256,
        size=result.compressed_size,
        content_size=result.content_size,
        files=result.files,
        parts=[str(p) for p in result.parts],
        compression=str(result.compression),
        unpack=commands,
    )
    ratio = result.compressed_size / result.content_size if result.content_size else 1.0
    out.summary(
        f"packed {result.files} files ({human_bytes(result.content_size)}) into "
        f"{result.archive.name}: {human_bytes(result.compressed_size)}, {ratio:.0%} of the tar size"
    )


def extract(
    ctx: typer.Context,
    archive: Annotated[
        Path, typer.Argument(help="A .tar.zst or .tar.gz (told by content), its .parts.json, or a .partNNN file.")
    ],
    dest: Annotated[
        Path, typer.Option("--dest", "-C", envvar=settings.EXTRACT_DEST, help="Directory to extract into.")
    ] = Path("."),
) -> None:
    """Extract a packed bundle safely, checking every digest on the way; the bundle directory appears only if all pass."""
    from kubeplay.bundle.extract import extract_bundle

    out = command_output(ctx)
    with out.byte_progress("extracting") as progress:
        result = extract_bundle(archive, dest, on_progress=progress)
    out.event("extracted", path=str(result.root), files=result.files, size=result.size)
    out.summary(f"extracted {result.files} files ({human_bytes(result.size)}) into {result.root}; all digests match")


def register(app: typer.Typer) -> None:
    app.command("pack")(pack)
    app.command("extract")(extract)
