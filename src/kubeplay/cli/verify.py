"""`kubeplay verify BUNDLE`: every digest of a bundle directory, archive or split parts, recomputed."""

# ruff: noqa: PLC0415  (kubeplay subpackages are imported in the command that uses them: fast start-up)

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kubeplay import settings
from kubeplay.cli.output import command_output
from kubeplay.console import human_bytes
from kubeplay.errors import BadInput, BundleError


def verify(
    ctx: typer.Context,
    bundle: Annotated[
        Path,
        typer.Argument(
            help="A bundle directory, a .tar.zst or .tar.gz, its .parts.json, or one of its .partNNN files."
        ),
    ],
    sums_sha256: Annotated[
        str | None,
        typer.Option(
            "--sums-sha256",
            envvar=settings.SUMS_SHA256,
            help="The SHA256SUMS digest `kubeplay build` printed; checks the list itself, not only the files.",
        ),
    ] = None,
    allowed_signers: Annotated[
        Path | None,
        typer.Option(
            "--allowed-signers",
            envvar=settings.ALLOWED_SIGNERS,
            help="OpenSSH allowed_signers file: SHA256SUMS.sig must verify with a key it allows for namespace "
            "kubeplay-bundle, checked before any digest (exit 2 when unsigned, changed or not allowed).",
        ),
    ] = None,
    signature_only: Annotated[
        bool,
        typer.Option(
            "--signature-only",
            help="With --allowed-signers and a bundle directory: check SHA256SUMS.sig and stop (install.sh uses it "
            "before sha256sum checks the files).",
        ),
    ] = False,
) -> None:
    """Recompute every digest against SHA256SUMS and kubeplay.json; exit 1 naming each changed, missing or extra file.

    With --allowed-signers the signature is checked first: exit 2 when the bundle is unsigned, its
    signature does not verify, or its key is not allowed.
    """
    from kubeplay.bundle.verify import verify_bundle

    out = command_output(ctx)
    if signature_only:
        from kubeplay.bundle.verify import verify_signature

        if allowed_signers is None:
            raise BadInput("--signature-only needs --allowed-signers (or KUBEPLAY_ALLOWED_SIGNERS)")
        signer = verify_signature(bundle, allowed_signers)
        out.event("signer", principals=signer.principals, fingerprint=signer.fingerprint)
        out.summary(f"{bundle}: signed by {signer.describe()}, allowed by {allowed_signers}; file digests not checked")
        return
    with out.byte_progress("verifying") as progress:
        result = verify_bundle(bundle, progress, expected_sums_sha256=sums_sha256, allowed_signers=allowed_signers)
    if result.signer is not None:
        out.info(f"signed by {result.signer.describe()}, allowed by {allowed_signers}")
        out.event("signer", principals=result.signer.principals, fingerprint=result.signer.fingerprint)
    else:
        out.info("origin not checked: no --allowed-signers given, so the digests prove integrity, not who built it")
    report = result.report
    for kind, paths in (
        ("changed", report.changed),
        ("missing", report.missing),
        ("extra", report.extra),
        ("problem", report.problems),
    ):
        for path in paths:
            out.event("finding", finding=kind, path=path)
    if result.sums_sha256:
        out.info(f"SHA256SUMS sha256 {result.sums_sha256}")
    if result.archive_sha256:
        out.info(f"archive sha256 {result.archive_sha256}")
    out.event("verified", bundle_kind=result.kind, path=result.label, ok=result.ok, files=report.checked)
    if not result.ok:
        for line in report.lines():
            out.line(f"  {line}")
        raise BundleError(
            f"{result.label}: verification failed: {report.counts()}",
            hint="copy the bundle again from the build machine, or rebuild it; do not install it as it is",
        )
    out.summary(
        f"verified {result.kind} {result.label}: {report.checked} files, {human_bytes(result.size)}, all digests match"
        + (f", signed by {result.signer.principals}" if result.signer else "")
    )


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
