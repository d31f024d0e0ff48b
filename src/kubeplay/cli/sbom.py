"""`kubeplay sbom BUNDLE`: the bundle's bill of materials, as built (CycloneDX 1.6) or converted to SPDX 2.3."""

# ruff: noqa: PLC0415  (kubeplay subpackages are imported in the command that uses them: fast start-up)

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from kubeplay.cli.output import command_output


class SbomFormat(enum.StrEnum):
    CYCLONEDX_JSON = "cyclonedx-json"
    SPDX_JSON = "spdx-json"


def sbom(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Argument(help="A bundle directory, or its sbom.cdx.json.")],
    output_format: Annotated[
        SbomFormat, typer.Option("--format", "-f", case_sensitive=False, help="cyclonedx-json (as built) or spdx-json.")
    ] = SbomFormat.CYCLONEDX_JSON,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the document here (default: standard output).")
    ] = None,
) -> None:
    """Print (or write) the bundle's SBOM: CycloneDX 1.6 as the build wrote it, or SPDX 2.3 JSON."""
    from kubeplay.bundle.sbom import SBOM_NAME
    from kubeplay.bundle.spdx import cyclonedx_to_spdx
    from kubeplay.errors import BadInput
    from kubeplay.state import atomic_write

    out = command_output(ctx)
    source = bundle / SBOM_NAME if bundle.is_dir() else bundle
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(
            f"{source}: cannot read: {exc.strerror}",
            hint="bundles built before kubeplay wrote SBOMs have none: rebuild",
        ) from None
    if output_format is SbomFormat.SPDX_JSON:
        document = json.dumps(cyclonedx_to_spdx(text), indent=2) + "\n"
    else:
        document = text if text.endswith("\n") else text + "\n"
    if output is None:
        sys.stdout.write(document)
    else:
        atomic_write(output, document.encode())
        out.summary(f"wrote the {output_format.value} SBOM of {bundle} to {output}")


def register(app: typer.Typer) -> None:
    app.command("sbom")(sbom)
