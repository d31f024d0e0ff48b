"""`kubeplay plan`: every file and image kubespray would download for a bundle.yaml."""

# ruff: noqa: PLC0415  (kubeplay subpackages are imported in the command that uses them: fast start-up)

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kubeplay import settings
from kubeplay.cli.output import command_output
from kubeplay.console import Output, Table, human_bytes
from kubeplay.errors import BadInput, FetchError, Interrupted, PlanIncomplete

if TYPE_CHECKING:
    from kubeplay.assemble.charts import ChartSet
    from kubeplay.catalog.model import Plan
    from kubeplay.config.bundle import BundleSpec
    from kubeplay.fetch.signatures import PlanSignatures
    from kubeplay.fetch.sizes import PlanSizes

COLUMNS = ("kind", "name", "version", "arch", "upstream")


def plan_table(plan: Plan, sizes: PlanSizes | None = None, signatures: PlanSignatures | None = None) -> Table:
    extra = _extra_columns(sizes, signatures)
    return Table(
        (*COLUMNS[:4], *extra, COLUMNS[4]),
        rows=[(*r[:4], *r[5:], r[4]) for r in plan_rows(plan, sizes, signatures)],
        title=f"kubespray {plan.kubespray_version} · Kubernetes {plan.kube_version}",
        fold=frozenset({"name", "upstream"}),
        right=frozenset({"size"}),
    )


def _extra_columns(sizes: PlanSizes | None, signatures: PlanSignatures | None) -> tuple[str, ...]:
    return (*(("size",) if sizes else ()), *(("signed",) if signatures else ()))


def plan_rows(
    plan: Plan, sizes: PlanSizes | None = None, signatures: PlanSignatures | None = None
) -> list[tuple[str, ...]]:
    """One row per artifact (kind, name, version, arch, upstream[, size][, signed]); the user's own (bundle.yaml
    images:/files:) are kind `user file`/`user image`, images of its charts `chart image` named by where they
    were found; size is `?` where upstream could not say; signed lists the signature artifacts upstream
    publishes for an image (`sig att sbom referrers`, `no`, `?` where it could not be asked)."""
    from kubeplay.catalog.user import USER_LABEL

    def size(n: int | None) -> tuple[str, ...]:
        return () if sizes is None else (human_bytes(n) if n is not None else "?",)

    def signed(upstream: str | None) -> tuple[str, ...]:
        if signatures is None:
            return ()
        if upstream is None:
            return ("",)
        found = signatures.images.get(upstream)
        return ("?",) if found is None else (" ".join(found.kinds) or "no",)

    rows: list[tuple[str, ...]] = [
        (
            kind(f.origin, "file"), f.name, f.version or "", f.arch, f.url,
            *size(sizes.of_file(f) if sizes else None), *signed(None),
        )
        for f in plan.files
    ]  # fmt: skip
    rows += [
        (
            kind(i.origin, "image"),
            i.variable.removeprefix(USER_LABEL) if i.origin == "chart" else i.name,
            i.tag or i.digest or "",
            ",".join(i.arches),
            i.upstream,
            *size(sizes.of_image(i) if sizes else None),
            *signed(i.upstream),
        )
        for i in plan.images
    ]
    return rows


def kind(origin: str, what: str) -> str:
    return f"{origin} {what}" if origin in ("user", "chart") else what


def plan_lines(plan: Plan, sizes: PlanSizes | None = None, signatures: PlanSignatures | None = None) -> list[str]:
    """The table as aligned plain text, header first (extra columns, SIZE and SIGNED, before UPSTREAM)."""
    extra = tuple(c.upper() for c in _extra_columns(sizes, signatures))
    header = ("KIND", "NAME", "VERSION", "ARCH", "UPSTREAM", *extra)
    rows = [(*r[:4], *r[5:], r[4]) for r in [header, *plan_rows(plan, sizes, signatures)]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]]) for row in rows]


def totals(plan: Plan) -> str:
    per_arch = ", ".join(f"{sum(1 for f in plan.files if f.arch == arch)} {arch}" for arch in (*plan.arches, "noarch"))
    return f"{len(plan.files)} files ({per_arch}), {len(plan.images)} images for {', '.join(plan.arches)}"


def print_offline_vars(plan: Plan, output: Output) -> None:
    output.line()
    output.heading(
        "kubespray variables that send every download to the deploy node "
        "(inventory group_vars; deploy fills in files_repo and registry_host):",
        always=True,
    )
    for name, value in plan.offline_vars.items():
        output.line(f'{name}: "{value}"')


def size_totals(plan: Plan, sizes: PlanSizes) -> str:
    """The bundle's weight: files, images (distinct blobs), per arch, and what could not be sized."""
    per_arch = ", ".join(f"{arch} {human_bytes(sizes.arch_total(arch))}" for arch in plan.arches)
    text = (
        f"{human_bytes(sizes.total)}: files {human_bytes(sizes.files_total)}, images "
        f"{human_bytes(sizes.images_total)} in {len(sizes.blobs())} distinct blobs (per arch: {per_arch})"
    )
    return text + (f"; {len(sizes.problems)} not sized" if sizes.problems else "")


def signature_totals(signatures: PlanSignatures) -> str:
    """How many images upstream signed, and how (cosign tags, OCI 1.1 referrers)."""
    tags = sum(1 for s in signatures.images.values() if {"sig", "att", "sbom"} & set(s.kinds))
    text = (
        f"{signatures.signed} of {len(signatures.images) + len(signatures.problems)} images come with upstream "
        f"signature artifacts (cosign .sig/.att/.sbom tags: {tags}, OCI referrers: {signatures.count('referrers')})"
    )
    return text + (f"; {len(signatures.problems)} not checked" if signatures.problems else "")


def print_plan(
    plan: Plan, output: Output, sizes: PlanSizes | None = None, signatures: PlanSignatures | None = None
) -> None:
    """The plan table, its totals (sizes, signatures), any render problems and the offline variables."""
    if output.is_terminal:
        output.table(plan_table(plan, sizes, signatures))
    else:
        # Piped: one artifact per line (a table would fold the URLs into 80 columns).
        for line in plan_lines(plan, sizes, signatures):
            output.line(line)
    output.line(f"total: {totals(plan)}")
    if sizes is not None:
        for unsized in sizes.problems:
            output.warn(f"{unsized.what} ({unsized.label}): size unknown: {unsized.reason}")
        for image in plan.images:
            missing = sizes.images[image.upstream].missing if image.upstream in sizes.images else ()
            if missing:
                output.warn(f"{image.upstream} ({image.variable}): upstream has no {', '.join(missing)} image")
        output.line(f"size: {size_totals(plan, sizes)}")
    if signatures is not None:
        for what, label, reason in signatures.problems:
            output.warn(f"{what} ({label}): signatures not checked: {reason}")
        for upstream, found in sorted(signatures.images.items()):
            if found.subjects:
                output.line(f"signed: {upstream}: {found.describe()}")
        output.line(f"signatures: {signature_totals(signatures)}")
    for problem in plan.problems:
        output.warn(f"{problem.entry}: {problem.variable}: {problem.message}")
    print_offline_vars(plan, output)


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan_command(
        ctx: typer.Context,
        bundle: Annotated[Path, typer.Argument(help="bundle.yaml (see `kubeplay init`).")],
        arch: Annotated[
            list[str] | None, typer.Option("--arch", help="Only this arch (repeatable); default: the bundle's arches.")
        ] = None,
        all_entries: Annotated[
            bool, typer.Option("--all", help="Every possible download: enabled or not, every plugin and runtime.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON on stdout.")] = False,
        sizes: Annotated[
            bool,
            typer.Option(
                "--sizes",
                help="Ask upstream (through mirrors:) for every file's and image's size and print what the bundle "
                "will weigh; nothing is downloaded.",
            ),
        ] = False,
        signatures: Annotated[
            bool,
            typer.Option(
                "--signatures",
                help="Ask upstream (through mirrors:) which images come with signature artifacts (cosign "
                ".sig/.att/.sbom tags, OCI 1.1 referrers), as the build will keep them; nothing is downloaded.",
            ),
        ] = False,
    ) -> None:
        """List every file and image kubespray would download for BUNDLE, with checksums and bundle paths."""
        from kubeplay.assemble.charts import CHARTS_DIR
        from kubeplay.catalog.planner import make_plan
        from kubeplay.catalog.release import open_release
        from kubeplay.catalog.user import with_user_artifacts
        from kubeplay.config.bundle import load_bundle_spec
        from kubeplay.osrepo.deploy_python import plan_deploy

        output = command_output(ctx)
        spec = load_bundle_spec(bundle)
        tree = open_release(spec)
        deploy = plan_deploy(spec, tree.root)  # BadInput for a deploy_node that cannot be one
        plan = with_user_artifacts(make_plan(spec, tree, arches=arch or None, all_entries=all_entries), spec)
        charts = resolve_chart_set(spec, plan, output)
        plan = charts.with_images(plan)
        measured = measure_sizes(spec, plan, output) if sizes else None
        if measured is not None:
            for chart in charts.charts:  # fetched already to read them: their size is known
                measured.files[f"{CHARTS_DIR}/{chart.filename}"] = len(chart.download.data)
                measured.file_arches[f"{CHARTS_DIR}/{chart.filename}"] = "noarch"
        signed = look_up_signatures(spec, plan, output) if signatures else None
        if as_json:
            body = plan.model_dump(mode="json")
            if measured is not None:
                body["sizes"] = sizes_json(plan, measured)
            if signed is not None:
                body["signatures"] = signatures_json(signed)
            if spec.charts:
                body["charts"] = [
                    {"name": c.package.name, "version": c.package.version, "source": c.download.source,
                     "sha256": c.download.sha256, "location": c.location}
                    for c in charts.charts
                ]  # fmt: skip
                body["unresolved_images"] = [
                    {"chart": location, "where": u.where, "why": u.why} for location, u in charts.unresolved
                ]
            sys.stdout.write(json.dumps(body, indent=2) + "\n")
        else:
            print_plan(plan, output, measured, signed)
            print_charts(charts, output)
        for warning in deploy.warnings():
            output.warn(warning)
        if charts.failures:
            for failure in charts.failures:
                output.error(f"{failure.url} ({failure.label}): {failure.reason}")
            cls = BadInput if all(f.mismatch for f in charts.failures) else FetchError
            raise cls(f"{len(charts.failures)} chart(s) could not be fetched", hint="fix bundle.yaml charts: there")
        if plan.problems:
            raise PlanIncomplete(
                f"{len(plan.problems)} template(s) did not render; the plan above lacks those entries",
                hint="the warnings name the entry and variable; set the variable in kubespray_vars or fix kube_version",
            )
        weight = f"; {human_bytes(measured.total)}" if measured is not None else ""
        weight += f"; {signed.signed} signed upstream" if signed is not None else ""
        output.summary(f"planned {totals(plan)}{weight} from {tree.label}")


def resolve_chart_set(spec: BundleSpec, plan: Plan, output: Output) -> ChartSet:
    """bundle.yaml's charts fetched (through mirrors:, cached) and the images they use."""
    from kubeplay.assemble.charts import ChartSet, resolve_charts
    from kubeplay.fetch.charts import ChartFetcher
    from kubeplay.fetch.clients import ClientPool
    from kubeplay.fetch.mirrors import load_mirrors

    if not spec.charts:
        return ChartSet()
    cache = settings.from_environ().cache.charts
    with ClientPool(load_mirrors(spec, out=output), connections=8, timeout=30.0) as clients:
        try:
            with output.status(f"fetching {len(spec.charts)} chart(s) to find the images they use"):
                return resolve_charts(spec, plan.arches, ChartFetcher(clients, cache_dir=cache))
        except KeyboardInterrupt:
            clients.stop.set()
            raise Interrupted("fetching charts was interrupted", hint=None) from None


def print_charts(charts: ChartSet, output: Output) -> None:
    """The charts with where they come from, and the images in them that could not be resolved."""
    if not charts.charts:
        return
    output.line()
    output.heading(
        "charts (served as OCI artifacts under <registry_project>/charts/ and from files/charts/):", always=True
    )
    for chart in charts.charts:
        output.line(
            f"chart  {chart.package.name} {chart.package.version}  {chart.download.source}  "
            f"sha256:{chart.download.sha256}  ({chart.location})"
        )
    for location, unresolved in charts.unresolved:
        output.warn(f"{location}: {unresolved.where}: {unresolved.why} (add the image to the chart's images:)")


def measure_sizes(spec: BundleSpec, plan: Plan, output: Output) -> PlanSizes:
    """Every artifact's size from upstream, through the spec's mirrors and credentials."""
    from kubeplay.fetch.clients import ClientPool
    from kubeplay.fetch.mirrors import load_mirrors
    from kubeplay.fetch.sizes import PlanSizer

    with ClientPool(load_mirrors(spec, out=output), connections=16, timeout=30.0) as clients:
        try:
            with output.status(f"asking upstream for the size of {len(plan.files) + len(plan.images)} artifacts"):
                return PlanSizer(clients, jobs=16).measure(plan)
        except KeyboardInterrupt:
            clients.stop.set()
            raise Interrupted("sizing the plan was interrupted; nothing was written", hint=None) from None


def sizes_json(plan: Plan, sizes: PlanSizes) -> dict[str, object]:
    return {
        "total": sizes.total,
        "files": sizes.files_total,
        "images": sizes.images_total,
        "blobs": len(sizes.blobs()),
        "per_arch": {arch: sizes.arch_total(arch) for arch in plan.arches},
        "by_path": dict(sorted(sizes.files.items())),
        "by_image": {i.upstream: sizes.of_image(i) for i in plan.images},
        "unknown": [{"what": p.what, "label": p.label, "reason": p.reason} for p in sizes.problems],
    }


def look_up_signatures(spec: BundleSpec, plan: Plan, output: Output) -> PlanSignatures:
    """Which images upstream signed, through the spec's mirrors and credentials."""
    from kubeplay.fetch.clients import ClientPool
    from kubeplay.fetch.mirrors import load_mirrors
    from kubeplay.fetch.signatures import look_up_plan

    with ClientPool(load_mirrors(spec, out=output), connections=16, timeout=30.0) as clients:
        try:
            with output.status(f"asking upstream for the signatures of {len(plan.images)} images"):
                return look_up_plan(clients, plan, jobs=16)
        except KeyboardInterrupt:
            clients.stop.set()
            raise Interrupted("looking up signatures was interrupted; nothing was written", hint=None) from None


def signatures_json(signatures: PlanSignatures) -> dict[str, object]:
    return {
        "signed": signatures.signed,
        "by_image": {
            upstream: [
                {"what": s.what, "digest": s.digest, "kinds": list(s.kinds), "tags": list(s.tags)}
                for s in found.subjects
            ]
            for upstream, found in sorted(signatures.images.items())
        },
        "unknown": [{"what": w, "label": label, "reason": r} for w, label, r in signatures.problems],
    }
