"""`kubeplay pack DIR` and `kubeplay extract ARCHIVE`: a bundle directory to one archive (or parts) and back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from kubeplay.bundle.extract import extract_bundle
from kubeplay.bundle.pack import DEFAULT_LEVEL, pack_checked_bundle
from kubeplay.bundle.parts import parse_size
from kubeplay.console import get_output, human_bytes

SPLIT_HELP = (
    "Write numbered parts of at most this size plus a parts manifest: K/M/G/T are powers of 1024, "
    "KB/MB/GB/TB powers of 1000. FAT32 holds files up to 4 GiB minus one byte: use 4GB there, not 4G."
)


@contextmanager
def byte_progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr fed with (done, total) bytes; silent with --quiet."""
    out = get_output()
    if out.quiet:
        yield lambda done, total: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, TimeRemainingColumn(), console=out.console, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update


def pack(
    bundle: Annotated[Path, typer.Argument(help="The bundle directory `kubeplay build` wrote.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            envvar="KUBEPLAY_PACK_OUTPUT",
            help="Directory for the archive (default: beside the bundle).",
        ),
    ] = None,
    split_size: Annotated[
        str | None, typer.Option("--split-size", envvar="KUBEPLAY_SPLIT_SIZE", help=SPLIT_HELP)
    ] = None,
    level: Annotated[
        int, typer.Option("--level", min=1, max=19, envvar="KUBEPLAY_ZSTD_LEVEL", help="zstd level (speed vs size).")
    ] = DEFAULT_LEVEL,
) -> None:
    """Stream a bundle directory into kubeplay-<kube_version>-<arches>.tar.zst, checking every file on the way."""
    out = get_output()
    split = parse_size(split_size) if split_size else None
    target = output if output is not None else bundle.resolve().parent
    with byte_progress("packing") as progress:
        result = pack_checked_bundle(bundle, target, split_size=split, level=level, on_progress=progress)
    written = result.parts if result.parts else [result.archive]
    for path in written:
        out.event("written", path=str(path), size=path.stat().st_size)
    if result.parts_manifest is not None:
        out.info(f"{len(result.parts)} parts; parts manifest {result.parts_manifest}")
    out.info(f"sha256 {result.sha256}  ({result.sha256_file.name})")
    out.event(
        "packed",
        archive=str(result.archive),
        sha256=result.sha256,
        size=result.compressed_size,
        content_size=result.content_size,
        files=result.files,
        parts=[str(p) for p in result.parts],
    )
    ratio = result.compressed_size / result.content_size if result.content_size else 1.0
    out.summary(
        f"packed {result.files} files ({human_bytes(result.content_size)}) into "
        f"{result.archive.name}: {human_bytes(result.compressed_size)}, {ratio:.0%} of the tar size"
    )


def extract(
    archive: Annotated[Path, typer.Argument(help="A .tar.zst, its .parts.json, or one of its .partNNN files.")],
    dest: Annotated[
        Path, typer.Option("--dest", "-C", envvar="KUBEPLAY_EXTRACT_DEST", help="Directory to extract into.")
    ] = Path("."),
) -> None:
    """Extract a packed bundle safely, checking every digest on the way; the bundle directory appears only if all pass."""
    out = get_output()
    with byte_progress("extracting") as progress:
        result = extract_bundle(archive, dest, on_progress=progress)
    out.event("extracted", path=str(result.root), files=result.files, size=result.size)
    out.summary(f"extracted {result.files} files ({human_bytes(result.size)}) into {result.root}; all digests match")


def register(app: typer.Typer) -> None:
    app.command("pack")(pack)
    app.command("extract")(extract)
