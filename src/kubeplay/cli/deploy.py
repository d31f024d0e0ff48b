"""`kubeplay deploy`, `add-node`, `remove-node`, `reset`: the cluster, through kubespray, from the deploy node."""

# ruff: noqa: PLC0415  (kubeplay subpackages are imported in the command that uses them: fast start-up)

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kubeplay import settings
from kubeplay.cli.output import command_output
from kubeplay.console import Output

if TYPE_CHECKING:
    from kubeplay.deploy.context import DeployContext

# The --state-dir default, needed when typer builds the commands at start-up. A copy of
# kubeplay.deploy.context.DEFAULT_STATE: importing that module here would load the deploy stack (pydantic,
# the inventory and config models) on every kubeplay run.
DEFAULT_STATE = Path("/var/lib/kubeplay/deploy")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", envvar=settings.CONFIG, help="config.yaml")]
BundleOpt = Annotated[
    Path | None,
    typer.Option("--bundle", envvar=settings.BUNDLE, help="Unpacked bundle (default: beside config.yaml, or .)."),
]
StateOpt = Annotated[
    Path, typer.Option("--state-dir", envvar=settings.DEPLOY_STATE, help="Inventory, ledger and logs of deploy.")
]
CaOpt = Annotated[
    Path | None,
    typer.Option("--ca", envvar=settings.CA, help="Registry CA (default: the one `kubeplay install` made)."),
]
NoPreflight = Annotated[bool, typer.Option("--skip-preflight", help="Do not check SSH access first.")]


def _bundle(config: Path, bundle: Path | None) -> Path:
    if bundle is not None:
        return bundle.resolve()
    for candidate in (config.resolve().parent, Path.cwd()):
        if (candidate / "kubeplay.json").exists():
            return candidate
    return Path.cwd()


def _context(config: Path, bundle: Path | None, state_dir: Path, ca: Path | None, out: Output) -> DeployContext:
    from kubeplay.deploy.context import build_context

    return build_context(config, _bundle(config, bundle), state_dir=state_dir, ca_path=ca, out=out)


def deploy_command(
    ctx: typer.Context,
    *,
    config: ConfigOpt = Path("config.yaml"),
    bundle: BundleOpt = None,
    from_step: Annotated[str | None, typer.Option("--from", help="Re-run from this step on, even if done.")] = None,
    only: Annotated[
        str | None, typer.Option("--only", help="Run just this step (after preflight), even if done.")
    ] = None,
    to_step: Annotated[str | None, typer.Option("--to", help="Stop after this step.")] = None,
    list_steps: Annotated[bool, typer.Option("--list-steps", help="Print the steps and whether each is done.")] = False,
    skip_preflight: NoPreflight = False,
    state_dir: StateOpt = DEFAULT_STATE,
    ca: CaOpt = None,
) -> None:
    """Deploy the cluster: preflight, node prep, then kubespray's cluster.yml phase by phase (resumable)."""
    from kubeplay.deploy.steps import deploy_runner
    from kubeplay.steps import Selection

    out = command_output(ctx)
    cluster = _context(config, bundle, state_dir, ca, out)
    runner = deploy_runner(cluster, preflight=not skip_preflight)
    if list_steps:
        out.table(runner.listing(cluster))
        return
    results = runner.run(cluster, Selection(from_step, only, to_step))
    ran = [r for r in results if r.ran]
    times = ", ".join(f"{r.name} {r.seconds:.0f}s" for r in ran)
    out.summary(
        f"deployed Kubernetes {cluster.bundle.kube_version} to {len(cluster.inventory.hosts)} node(s): "
        f"{len(ran)} step(s) run, {len(results) - len(ran)} already done" + (f" ({times})" if times else "")
    )


def add_node_command(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="Inventory names of the nodes to add (from config.yaml).")],
    *,
    config: ConfigOpt = Path("config.yaml"),
    bundle: BundleOpt = None,
    skip_preflight: NoPreflight = False,
    state_dir: StateOpt = DEFAULT_STATE,
    ca: CaOpt = None,
) -> None:
    """Add worker nodes: inventory rebuilt from config.yaml, node prep, kubespray's scale.yml --limit."""
    from kubeplay.deploy.day2 import add_nodes

    out = command_output(ctx)
    done = add_nodes(_context(config, bundle, state_dir, ca, out), names, preflight=not skip_preflight)
    out.summary(f"added {', '.join(done.hosts)} to the cluster")


def remove_node_command(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="Inventory names of the nodes to remove.")],
    *,
    unreachable: Annotated[
        bool, typer.Option("--unreachable", help="The node is gone: remove it from the cluster without resetting it.")
    ] = False,
    config: ConfigOpt = Path("config.yaml"),
    bundle: BundleOpt = None,
    state_dir: StateOpt = DEFAULT_STATE,
    ca: CaOpt = None,
) -> None:
    """Remove nodes with kubespray's remove-node.yml (unattended), then undo node prep on them."""
    from kubeplay.deploy.day2 import remove_nodes

    out = command_output(ctx)
    done = remove_nodes(_context(config, bundle, state_dir, ca, out), names, unreachable=unreachable)
    out.summary(f"removed {', '.join(done.hosts)}; now delete them from config.yaml's inventory")


def reset_command(
    ctx: typer.Context,
    *,
    keep_node_prep: Annotated[
        bool, typer.Option("--keep-node-prep", help="Leave the bundle repo, CA, hosts entry and chrony in place.")
    ] = False,
    node_prep_only: Annotated[
        bool,
        typer.Option(
            "--node-prep-only", help="Only undo node prep (skip reset.yml): for nodes kubespray never reached."
        ),
    ] = False,
    config: ConfigOpt = Path("config.yaml"),
    bundle: BundleOpt = None,
    state_dir: StateOpt = DEFAULT_STATE,
    ca: CaOpt = None,
) -> None:
    """Tear the cluster down with kubespray's reset.yml (unattended) and undo node prep on every node."""
    from kubeplay.deploy.day2 import reset_cluster

    out = command_output(ctx)
    cluster = _context(config, bundle, state_dir, ca, out)
    done = reset_cluster(cluster, keep_node_prep=keep_node_prep, node_prep_only=node_prep_only)
    what = "node prep undone" if node_prep_only else f"node prep {'kept' if keep_node_prep else 'undone'}"
    out.summary(f"reset {len(done.hosts)} node(s); {what}")


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy_command)
    app.command("add-node")(add_node_command)
    app.command("remove-node")(remove_node_command)
    app.command("reset")(reset_command)
