"""`kubeplay demo`: the air-gapped rehearsal end to end on lab nodes; `--plan-only` prints just the plan."""

# ruff: noqa: PLC0415  (kubeplay subpackages are imported in the command that uses them: fast start-up)

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kubeplay import settings
from kubeplay.cli.output import command_output
from kubeplay.cli.plan import print_plan, totals
from kubeplay.console import Output
from kubeplay.errors import PlanIncomplete, StepFailed

# Documentation addresses (RFC 5737): printed as an example, never contacted.
DEMO_FILES_REPO = "http://192.0.2.10:8080/files"
DEMO_REGISTRY = "192.0.2.10:5443"


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_command(
        ctx: typer.Context,
        workdir: Annotated[
            Path,
            typer.Option("--workdir", envvar=settings.DEMO_DIR, help="Work directory; its build cache is reused."),
        ] = Path("demo-out"),
        nodes: Annotated[int, typer.Option("--nodes", min=2, max=8, help="Lab nodes; node0 is the deploy node.")] = 4,
        keep: Annotated[bool, typer.Option("--keep", help="Leave the lab up and the archive in place.")] = False,
        plan_only: Annotated[
            bool, typer.Option("--plan-only", help="Only plan a two-arch bundle and print it (no root needed).")
        ] = False,
        upgrade: Annotated[
            bool,
            typer.Option(
                "--upgrade",
                help="Rehearse an upgrade instead: the older kubespray release, deploy, then a delta bundle of the "
                "newer one built against the deploy node's inventory, installed beside it, and `kubeplay upgrade`.",
            ),
        ] = False,
        upgrade_path: Annotated[
            str,
            typer.Option(
                "--upgrade-path",
                help="With --upgrade: minor (older release at its default Kubernetes -> the newer) or patch "
                "(the newer release, the patch before its default -> the default).",
            ),
        ] = "minor",
    ) -> None:
        """Rehearse the air gap here: simulated upstream, build, pack, lab nodes, install, kubespray deploy, checks."""
        out = command_output(ctx)
        if plan_only:
            plan_demo(out)
            return
        # imported here: the rehearsal pulls in the simulator, the build pipeline and the lab
        from kubeplay.lab.demo import run_demo
        from kubeplay.lab.demo.upgrade import run_upgrade_demo

        if upgrade:
            report = run_upgrade_demo(workdir, nodes=nodes, keep=keep, out=out, path=upgrade_path)
        else:
            report = run_demo(workdir, nodes=nodes, keep=keep, out=out)
        if not report.ok:
            failed = len(report.failed_checks())
            raise StepFailed(
                f"demo: {failed} check(s) failed" + (f"; {report.error}" if report.error else ""),
                hint=f"report: {workdir}/report{f'-upgrade-{upgrade_path}' if upgrade else ''}.json, logs: {workdir}/logs",
            )


def plan_demo(output: Output) -> None:
    """Plan a two-arch (amd64, arm64) bundle: a real kubespray release from ../shared, else the built-in example."""
    from kubeplay.catalog.examples import example_tree_path, newest_release_archive
    from kubeplay.catalog.offline import offline_vars
    from kubeplay.catalog.planner import make_plan
    from kubeplay.catalog.source import load_tree
    from kubeplay.config.bundle import BundleSpec, KubesprayRef

    archive = newest_release_archive()
    if archive is not None:
        tree = load_tree(archive)
        origin = f"{archive.name} (real release)"
    else:
        tree = load_tree(example_tree_path())
        origin = "kubeplay's built-in example tree (../shared has no kubespray release)"
    output.info(f"kubeplay demo: planning an offline bundle for amd64 and arm64 from {origin}")
    ref = KubesprayRef(version=tree.version or "v0.0.0", source=str(archive or tree.root), sha256=tree.sha256)
    plan = make_plan(BundleSpec(kubespray=ref, arches=["amd64", "arm64"]), tree)
    print_plan(plan, output)
    concrete = offline_vars(plan, files_repo=DEMO_FILES_REPO, registry_host=DEMO_REGISTRY)
    output.line()
    output.heading(f"the same, for a deploy node serving files at {DEMO_FILES_REPO}:", always=True)
    for name in ("files_repo", "registry_host", "kube_image_repo", "github_url"):
        if name in concrete:
            output.line(f'{name}: "{concrete[name]}"')
    if plan.problems:
        raise PlanIncomplete(f"{len(plan.problems)} template(s) did not render")
    output.summary(f"demo planned {totals(plan)} from {tree.label}")
