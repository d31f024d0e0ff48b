"""`kubeplay build bundle.yaml -o DIR`: every file and image of the plan into one verified bundle directory."""

# ruff: noqa: PLC0415  (kubeplay subpackages are imported in the command that uses them: fast start-up)

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kubeplay import settings
from kubeplay.bundle.compression import Compression
from kubeplay.cli.output import command_output
from kubeplay.console import human_bytes
from kubeplay.errors import BadInput, FetchError


def build(
    ctx: typer.Context,
    spec_path: Annotated[Path, typer.Argument(metavar="BUNDLE_YAML", help="The bundle description (bundle.yaml).")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            envvar=settings.BUILD_OUTPUT,
            help="Bundle directory (default: ./kubeplay-<kube_version>-<distros>-<arches>). Re-using it resumes "
            "and updates: only what is missing or changed is fetched.",
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, max=64, envvar=settings.JOBS, help="Parallel downloads.")
    ] = 8,
    retries: Annotated[
        int, typer.Option("--retries", min=1, max=20, envvar=settings.RETRIES, help="Tries per download.")
    ] = 5,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, envvar=settings.TIMEOUT, help="Seconds without data before a retry.")
    ] = 60.0,
    wheels: Annotated[
        bool | None,
        typer.Option(
            "--wheels/--no-wheels",
            help="Put Python wheels for the deploy node (kubeplay, Ansible, kubespray's requirements) in wheels/ "
            f"(default: yes; env {settings.WHEELS}).",
        ),
    ] = None,
    pack: Annotated[
        bool, typer.Option("--pack", help="Also pack the bundle into one .tar.zst beside it (see `kubeplay pack`).")
    ] = False,
    split_size: Annotated[
        str | None, typer.Option("--split-size", help="With --pack: write parts of this size (e.g. 4GB).")
    ] = None,
    compression: Annotated[
        Compression,
        typer.Option(
            "--compression",
            envvar=settings.PACK_COMPRESSION,
            case_sensitive=False,
            help="With --pack: zstd, or gzip for plain `tar xzf` (see `kubeplay pack`).",
        ),
    ] = Compression.ZSTD,
    signatures: Annotated[
        bool,
        typer.Option(
            "--signatures/--no-signatures",
            help="Keep upstream image signatures (cosign .sig/.att/.sbom tags and OCI referrers) beside the images.",
        ),
    ] = True,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign",
            metavar="KEY",
            help="Sign SHA256SUMS with this SSH private key (SHA256SUMS.sig; with --pack also the archive's digest file).",
        ),
    ] = None,
    base: Annotated[
        Path | None,
        typer.Option(
            "--base",
            metavar="BASE",
            envvar=settings.BUILD_BASE,
            help="Also write a delta bundle beside the full one, holding only what BASE lacks: BASE is the deploy "
            "node's inventory.json (`kubeplay status --inventory`), a bundle directory or a packed bundle. "
            "With --pack, the delta is packed (it is what travels); with --sign, it is signed too.",
        ),
    ] = None,
    base_content: Annotated[
        Path | None,
        typer.Option(
            "--base-content",
            metavar="DIR",
            envvar=settings.BUILD_BASE_CONTENT,
            help="With --base: a bundle directory or packed bundle holding the base's files, so changed binaries "
            "travel as zstd patches against them (default: BASE itself when it is a bundle).",
        ),
    ] = None,
) -> None:
    """Fetch kubespray, every file and every image it needs (and OS packages) into one bundle directory."""
    # imported here: the pipeline pulls in httpx, jinja2 and the catalog, which other commands do not need
    from kubeplay.assemble.pipeline import BuildOptions, default_bundle_name, run_build
    from kubeplay.config.bundle import load_bundle_spec

    out = command_output(ctx)
    signing_key = None
    if sign_key is not None:  # read before the build: a key that cannot sign fails in a second, not after an hour
        from kubeplay.cli.sign import signing_key as read_signing_key

        signing_key = read_signing_key(sign_key)
    spec = load_bundle_spec(spec_path)
    base_inventory = None
    if base is not None:  # read before the build: a base that cannot be one fails in seconds
        from kubeplay.bundle.base import holds_content, load_base

        base_inventory = load_base(base)
        out.info(f"delta base: {base_inventory.describe()}")
        if base_content is None and holds_content(base):
            base_content = base
    elif base_content is not None:
        raise BadInput("--base-content needs --base (what the delta is built against)")
    if base_content is not None and not base_content.exists():
        raise BadInput(f"{base_content} (--base-content): no such file or directory")
    target = output or Path(default_bundle_name(spec, spec.kube_version or spec.kubespray.version))
    if base_content is not None and base_content.resolve() == target.resolve():
        # the build replaces the old version's files in place: nothing would be left to patch against
        out.warn(f"{base_content} is also the build's output: the delta carries changed files whole, without patches")
        base_content = None
    wheels = settings.from_environ().wheels if wheels is None else wheels
    options = BuildOptions(jobs=jobs, retries=retries, timeout=timeout, wheels=wheels, signatures=signatures)
    result = run_build(spec, target, options, out=out)
    for failure in result.failures:
        where = f" ({failure.label})" if failure.label else ""
        out.error(f"{failure.url}{where}: {failure.reason}")
        out.event("failed", url=failure.url, label=failure.label, reason=failure.reason)
    if result.bad_input:
        raise BadInput(
            f"{len(result.failures)} of your bundle.yaml artifact(s) do not match upstream; everything else is "
            f"kept in {target}",
            hint="fix bundle.yaml where each error above points and run the same command again: it resumes",
        )
    if result.failures:
        raise FetchError(
            f"{len(result.failures)} item(s) failed; everything else is kept in {target}",
            hint="fix the cause (mirror, credentials, network) and run the same command again: it resumes",
        )
    assert result.manifest is not None
    totals = result.manifest.totals
    out.event("built", bundle=str(target), sha256sums=result.sums_sha256, fetched=result.bytes_fetched)
    out.info(f"SHA256SUMS sha256 {result.sums_sha256}")
    if signing_key is not None:
        from kubeplay.bundle.trust import sign_bundle

        out.info(f"signed: {sign_bundle(target, signing_key)}")
    carried = target
    if base_inventory is not None:
        from kubeplay.assemble.delta import write_delta
        from kubeplay.bundle.trust import sign_bundle

        delta = write_delta(target, base_inventory, base_content=base_content, out=out)
        record = delta.record
        out.event(
            "delta",
            path=str(delta.path),
            sha256sums=delta.sums_sha256,
            base=record.base.identities,
            carried_size=record.carried_size,
            full_size=record.full_size,
            patches=len(record.patches),
        )
        out.info(f"delta SHA256SUMS sha256 {delta.sums_sha256}")
        if signing_key is not None:
            out.info(f"signed: {sign_bundle(delta.path, signing_key)}")
        carried = delta.path
    if pack:
        from kubeplay.cli.pack import pack_and_report

        pack_and_report(out, carried, None, split_size=split_size, compression=compression, signing_key=signing_key)
    if base_inventory is not None:
        out.summary(
            f"delta bundle {carried}: {human_bytes(record.carried_size)} ({delta.files} files, "
            f"{len(record.patches)} of them patches) instead of a full bundle's {human_bytes(record.full_size)}, "
            f"{delta.ratio:.1%}; full bundle in {target}"
        )
        return
    out.summary(
        f"bundle {target}: {totals.files} files ({human_bytes(totals.files_size)}), {totals.images} images "
        f"({totals.blobs} blobs, {human_bytes(totals.blobs_size)}); fetched {human_bytes(result.bytes_fetched)}"
    )


def register(app: typer.Typer) -> None:
    app.command("build")(build)
