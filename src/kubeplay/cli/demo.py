"""`kubeplay demo`: plan a two-arch bundle from the newest kubespray at hand (interim demo until build lands)."""

from __future__ import annotations

import typer

from kubeplay.catalog.examples import example_tree_path, newest_release_archive
from kubeplay.catalog.offline import offline_vars
from kubeplay.catalog.planner import make_plan
from kubeplay.catalog.source import load_tree
from kubeplay.cli.plan import PlanIncomplete, print_plan, totals
from kubeplay.config.bundle import BundleSpec, KubesprayRef
from kubeplay.console import get_output

DEMO_FILES_REPO = "http://10.0.0.2:8080/files"
DEMO_REGISTRY = "10.0.0.2:5443"


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_command() -> None:
        """Plan a two-arch (amd64, arm64) bundle: a real kubespray release from ../shared, else the built-in example."""
        output = get_output()
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
        output.console.print(f"\n[bold]the same, for a deploy node serving files at {DEMO_FILES_REPO}:[/]")
        for name in ("files_repo", "registry_host", "kube_image_repo", "github_url"):
            if name in concrete:
                output.console.print(f'{name}: "{concrete[name]}"', markup=False, highlight=False)
        if plan.problems:
            raise PlanIncomplete(f"{len(plan.problems)} template(s) did not render")
        output.summary(f"demo planned {totals(plan)} from {tree.label}")
