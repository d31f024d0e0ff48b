"""`kubeplay plan`: every file and image kubespray would download for a bundle.yaml."""

# ruff: noqa: PLC0415  (kubeplay subpackages are imported in the command that uses them: fast start-up)

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kubeplay.cli.output import command_output
from kubeplay.console import Output, Table
from kubeplay.errors import PlanIncomplete

if TYPE_CHECKING:
    from kubeplay.catalog.model import Plan


def plan_table(plan: Plan) -> Table:
    return Table(
        ("kind", "name", "version", "arch", "upstream"),
        rows=list(plan_rows(plan)),
        title=f"kubespray {plan.kubespray_version} · Kubernetes {plan.kube_version}",
        fold=frozenset({"name", "upstream"}),
    )


def plan_rows(plan: Plan) -> list[tuple[str, str, str, str, str]]:
    """One row per artifact; the user's own (bundle.yaml images:/files:) are kind `user file`/`user image`."""
    rows = [(kind(f.origin, "file"), f.name, f.version or "", f.arch, f.url) for f in plan.files]
    rows += [
        (kind(i.origin, "image"), i.name, i.tag or i.digest or "", ",".join(i.arches), i.upstream) for i in plan.images
    ]
    return rows


def kind(origin: str, what: str) -> str:
    return f"user {what}" if origin == "user" else what


def plan_lines(plan: Plan) -> list[str]:
    """The table as aligned plain text, header first."""
    rows = [("KIND", "NAME", "VERSION", "ARCH", "UPSTREAM"), *plan_rows(plan)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)), row[4]]) for row in rows]


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


def print_plan(plan: Plan, output: Output) -> None:
    """The plan table, its totals, any render problems and the offline variables, on the console."""
    if output.is_terminal:
        output.table(plan_table(plan))
    else:
        # Piped: one artifact per line (a table would fold the URLs into 80 columns).
        for line in plan_lines(plan):
            output.line(line)
    output.line(f"total: {totals(plan)}")
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
    ) -> None:
        """List every file and image kubespray would download for BUNDLE, with checksums and bundle paths."""
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
        if as_json:
            sys.stdout.write(plan.model_dump_json(indent=2) + "\n")
        else:
            print_plan(plan, output)
        for warning in deploy.warnings():
            output.warn(warning)
        if plan.problems:
            raise PlanIncomplete(
                f"{len(plan.problems)} template(s) did not render; the plan above lacks those entries",
                hint="the warnings name the entry and variable; set the variable in kubespray_vars or fix kube_version",
            )
        output.summary(f"planned {totals(plan)} from {tree.label}")
