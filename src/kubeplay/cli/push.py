"""`kubeplay push`: copy a bundle's images into an existing registry (Harbor or any distribution registry)."""

# ruff: noqa: PLC0415  (kubeplay subpackages are imported in the command that uses them: fast start-up)

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from kubeplay import settings
from kubeplay.cli.output import command_output
from kubeplay.console import human_bytes


def push(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Argument(help="Unpacked bundle directory.")],
    registry: Annotated[
        str,
        typer.Option(
            "--registry",
            envvar=settings.PUSH_REGISTRY,
            help="HOST, HOST:PORT or HOST/PREFIX; PREFIX replaces the bundle project (library).",
        ),
    ],
    *,
    ca: Annotated[Path | None, typer.Option("--ca", help="CA certificate (PEM) to trust for the registry.")] = None,
    credentials_file: Annotated[
        Path | None,
        typer.Option(
            "--credentials-file",
            envvar=settings.PUSH_CREDENTIALS_FILE,
            help="0600 file with `username:` and `password:` lines (else KUBEPLAY_PUSH_USERNAME/PASSWORD).",
        ),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=32, help="Parallel blob uploads.")] = 4,
    plain_http: Annotated[bool, typer.Option("--plain-http", help="The registry speaks HTTP, not HTTPS.")] = False,
) -> None:
    """Copy every bundled image into REGISTRY: present blobs skipped, mounts across repositories, resumable."""
    from kubeplay.bootstrap.push import Target, load_credentials, push_bundle

    out = command_output(ctx)
    target = Target.parse(registry, plain_http)
    creds = load_credentials(dict(os.environ), credentials_file)
    report = push_bundle(bundle, target, ca, creds, jobs)
    out.event("push", **{k: v for k, v in vars(report).items() if not k.startswith("_")})
    if report.tagged_cut:
        out.warn(
            f"{target.host} refused upstream's index for {len(report.tagged_cut)} image(s) (it lists platforms the "
            f"bundle does not carry): their tags name the index cut to the bundled platforms, so `cosign verify` "
            f"by tag does not find upstream's signature there; verify by a platform digest "
            f"(kubeplay.json platforms): {', '.join(report.tagged_cut)}"
        )
    out.summary(
        f"pushed {report.images} image(s) to {target.host}{'/' + target.prefix if target.prefix else ''}: "
        f"{report.blobs_uploaded} blob(s) uploaded ({human_bytes(report.bytes_uploaded)}), "
        f"{report.blobs_mounted} mounted, {report.blobs_present} already there; "
        f"{report.manifests_put} manifest(s) written, {report.manifests_present} already there"
    )


def register(app: typer.Typer) -> None:
    app.command("push")(push)
