"""`kubeplay baseline CAPTURE`: turn `dpkg-query -W` / `rpm -qa` output from a node into a baseline file."""

# ruff: noqa: PLC0415  (kubeplay subpackages are imported in the command that uses them: fast start-up)

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from kubeplay import settings
from kubeplay.cli.output import command_output
from kubeplay.errors import BadInput

CAPTURE_HELP = (
    "Output captured on a real node: `dpkg-query -W` (or a copy of /var/lib/dpkg/status) on Debian/Ubuntu, "
    "`rpm -qa` on the RHEL family. `-` reads standard input."
)


def baseline(
    ctx: typer.Context,
    capture: Annotated[str, typer.Argument(help=CAPTURE_HELP)],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", envvar=settings.BASELINE_OUTPUT, help="Write here (default: stdout)."),
    ] = None,
) -> None:
    """Normalize a node's package list; point os[].baseline in bundle.yaml at it to bundle only what nodes lack."""
    from kubeplay.osrepo.baseline import baseline_document, parse_baseline
    from kubeplay.state import atomic_write

    out = command_output(ctx)
    if capture == "-":
        text, origin = sys.stdin.read(), "stdin"
    else:
        path = Path(capture)
        try:
            text, origin = path.read_text(encoding="utf-8", errors="replace"), str(path)
        except OSError as exc:
            raise BadInput(
                f"cannot read {path}: {exc.strerror}", hint="pass the file the node's command wrote"
            ) from exc
    family, packages = parse_baseline(text, origin)
    if not packages:
        raise BadInput(f"{origin}: no installed packages found", hint="capture `dpkg-query -W` or `rpm -qa` again")
    doc = baseline_document(family, packages, origin)
    if output is None:
        sys.stdout.write(doc)
    else:
        atomic_write(output, doc.encode())
    where = f" -> {output}" if output else ""
    out.summary(f"baseline: {len(packages)} {family} packages from {origin}{where}")


def register(app: typer.Typer) -> None:
    app.command("baseline")(baseline)
