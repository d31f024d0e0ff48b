"""`kubeplay upgrade`: the cluster of a config.yaml to another version the deploy node serves."""

# ruff: noqa: PLC0415  (kubeplay subpackages are imported in the command that uses them: fast start-up)

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kubeplay.cli.deploy import DEFAULT_STATE, CaOpt, ConfigOpt, NoPreflight, ServedOpt, StateOpt, served_paths
from kubeplay.cli.output import command_output


def upgrade_command(
    ctx: typer.Context,
    *,
    to: Annotated[str, typer.Option("--to", help="Served Kubernetes version to upgrade to, e.g. 1.35.4.")],
    config: ConfigOpt = Path("config.yaml"),
    from_step: Annotated[str | None, typer.Option("--from", help="Re-run from this step on, even if done.")] = None,
    only: Annotated[
        str | None, typer.Option("--only", help="Run just this step (after preflight), even if done.")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Stop after this step.")] = None,
    list_steps: Annotated[bool, typer.Option("--list-steps", help="Print the steps and whether each is done.")] = False,
    skip_preflight: NoPreflight = False,
    state_dir: StateOpt = DEFAULT_STATE,
    ca: CaOpt = None,
    served: ServedOpt = None,
) -> None:
    """Upgrade the cluster to a served version with kubespray's upgrade_cluster.yml, phase by phase (resumable).

    Checked before any host is touched: one Kubernetes minor and one kubespray release at a time, never back.
    """
    from kubeplay.deploy.upgrade import prepare_upgrade, upgrade, upgrade_runner
    from kubeplay.steps import Selection

    out = command_output(ctx)
    selection = Selection(from_step, only, until, to_option="--until")
    u = prepare_upgrade(
        config, to, state_dir=state_dir, served=served_paths(served), out=out, ca_path=ca,
        selection=selection, preflight=not skip_preflight, probe=not list_steps,
    )  # fmt: skip
    if list_steps:
        out.table(upgrade_runner(u, preflight=not skip_preflight).listing(u))
        return
    out.info(
        f"upgrading from Kubernetes {u.current.kube} ({u.current.source}) to {u.target.describe()}, "
        f"with {u.deploy.kubespray_dir}"
    )
    results, complete = upgrade(u, selection, preflight=not skip_preflight)
    ran = [r for r in results if r.ran]
    times = ", ".join(f"{r.name} {r.seconds:.0f}s" for r in ran)
    state = f"the cluster runs Kubernetes {u.version}" if complete else "not finished: run the same command to go on"
    out.summary(
        f"upgrade to {u.version} on {len(u.deploy.inventory.hosts)} node(s): {len(ran)} step(s) run, "
        f"{len(results) - len(ran)} already done; {state}" + (f" ({times})" if times else "")
    )


def register(app: typer.Typer) -> None:
    app.command("upgrade")(upgrade_command)
