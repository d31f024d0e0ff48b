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
    from kubeplay.bootstrap.paths import HostPaths
    from kubeplay.deploy.context import DeployContext

# The --state-dir default, needed when typer builds the commands at start-up. A copy of
# kubeplay.deploy.context.DEFAULT_STATE: importing that module here would load the deploy stack (pydantic,
# the inventory and config models) on every kubeplay run.
DEFAULT_STATE = Path("/var/lib/kubeplay/deploy")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", envvar=settings.CONFIG, help="config.yaml")]
BundleOpt = Annotated[
    Path | None,
    typer.Option(
        "--bundle",
        envvar=settings.BUNDLE,
        help="Unpacked bundle (default: a version the deploy node serves, see --version; without a served set: "
        "beside config.yaml, or .).",
    ),
]
VersionOpt = Annotated[
    str | None,
    typer.Option(
        "--version",
        help="Served Kubernetes version to use when the state dir records none (default: the cluster's own, "
        "else the only one served).",
    ),
]
ServedOpt = Annotated[
    Path | None,
    typer.Option(
        "--served", envvar=settings.SERVED, help="What this deploy node serves (default: /var/lib/kubeplay/served)."
    ),
]
StateOpt = Annotated[
    Path, typer.Option("--state-dir", envvar=settings.DEPLOY_STATE, help="Inventory, ledger and logs of deploy.")
]
CaOpt = Annotated[
    Path | None,
    typer.Option("--ca", envvar=settings.CA, help="Registry CA (default: the one `kubeplay install` made)."),
]
NoPreflight = Annotated[bool, typer.Option("--skip-preflight", help="Do not check SSH access first.")]


def served_paths(served: Path | None) -> HostPaths:
    """The served set of --served, else KUBEPLAY_SERVED, else $KUBEPLAY_STATE_DIR/served, else the default."""
    from kubeplay.deploy.versions import ServedPaths

    return ServedPaths(served_dir=served if served is not None else settings.from_environ().served)


def _context(
    config: Path,
    bundle: Path | None,
    state_dir: Path,
    ca: Path | None,
    out: Output,
    *,
    version: str | None = None,
    served: Path | None = None,
    command: str = "deploy",
) -> DeployContext:
    from kubeplay.deploy.context import build_context
    from kubeplay.deploy.versions import choose_bundle

    facts = choose_bundle(config, state_dir, served_paths(served), bundle_dir=bundle, version=version, command=command)
    return build_context(config, facts, state_dir=state_dir, ca_path=ca, out=out)


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
    version: VersionOpt = None,
    served: ServedOpt = None,
) -> None:
    """Deploy the cluster: preflight, node prep, then kubespray's cluster.yml phase by phase (resumable)."""
    from kubeplay.deploy.steps import deploy_runner, run_deploy
    from kubeplay.steps import Selection

    out = command_output(ctx)
    cluster = _context(config, bundle, state_dir, ca, out, version=version, served=served)
    runner = deploy_runner(cluster, preflight=not skip_preflight)
    if list_steps:
        out.table(runner.listing(cluster))
        return
    results = run_deploy(cluster, runner, Selection(from_step, only, to_step))
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
    version: VersionOpt = None,
    served: ServedOpt = None,
) -> None:
    """Add worker nodes: inventory rebuilt from config.yaml, node prep, kubespray's scale.yml --limit."""
    from kubeplay.deploy.day2 import add_nodes

    out = command_output(ctx)
    cluster = _context(config, bundle, state_dir, ca, out, version=version, served=served, command="add-node")
    done = add_nodes(cluster, names, preflight=not skip_preflight)
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
    version: VersionOpt = None,
    served: ServedOpt = None,
) -> None:
    """Remove nodes with kubespray's remove-node.yml (unattended), then undo node prep on them."""
    from kubeplay.deploy.day2 import remove_nodes

    out = command_output(ctx)
    cluster = _context(config, bundle, state_dir, ca, out, version=version, served=served, command="remove-node")
    done = remove_nodes(cluster, names, unreachable=unreachable)
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
    version: VersionOpt = None,
    served: ServedOpt = None,
) -> None:
    """Tear the cluster down with kubespray's reset.yml (unattended) and undo node prep on every node."""
    from kubeplay.deploy.day2 import reset_cluster

    out = command_output(ctx)
    cluster = _context(config, bundle, state_dir, ca, out, version=version, served=served, command="reset")
    done = reset_cluster(cluster, keep_node_prep=keep_node_prep, node_prep_only=node_prep_only)
    what = "node prep undone" if node_prep_only else f"node prep {'kept' if keep_node_prep else 'undone'}"
    out.summary(f"reset {len(done.hosts)} node(s); {what}")


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy_command)
    app.command("add-node")(add_node_command)
    app.command("remove-node")(remove_node_command)
    app.command("reset")(reset_command)
