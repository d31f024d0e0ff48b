"""`kubeplay install`, `kubeplay uninstall`, `kubeplay status`: the deploy node serving the bundle."""

# ruff: noqa: PLC0415  (kubeplay subpackages are imported in the command that uses them: fast start-up)

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kubeplay import settings
from kubeplay.console import get_output
from kubeplay.errors import BadInput

# Shown in the --from help, which typer builds at start-up for every command. A copy of
# kubeplay.bootstrap.steps.STEP_NAMES: importing that module here costs ~140 ms (cryptography, pydantic)
# on every kubeplay run. run_install checks --from against the real list.
STEP_NAMES = (
    "preflight",
    "os-packages",
    "tools",
    "certs",
    "trust",
    "hosts",
    "registry",
    "nginx",
    "chrony",
    "services",
    "health",
)

STATE_HELP = "Where install keeps its ledger and record (default /var/lib/kubeplay)."


def _default_bundle(config: Path) -> Path:
    for candidate in (config.resolve().parent, Path.cwd()):
        if (candidate / "kubeplay.json").exists():
            return candidate
    return Path.cwd()


def install(
    config: Annotated[Path, typer.Option("--config", "-c", envvar=settings.CONFIG, help="config.yaml")] = Path(
        "config.yaml"
    ),
    bundle: Annotated[
        Path | None,
        typer.Option("--bundle", envvar=settings.BUNDLE, help="Unpacked bundle (default: beside config.yaml, or .)."),
    ] = None,
    from_step: Annotated[
        str | None, typer.Option("--from", help=f"Re-run from this step on, even if done: {', '.join(STEP_NAMES)}.")
    ] = None,
    no_systemd: Annotated[
        bool | None,
        typer.Option(
            "--no-systemd",
            help="Where systemd is not PID 1: run registry and nginx as child processes and serve in the foreground "
            f"(env {settings.NO_SYSTEMD}).",
        ),
    ] = None,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", envvar=settings.STATE_DIR, help=STATE_HELP)] = None,
) -> None:
    """Serve the bundle from this deploy node: OS repo, certificates, registry, nginx, chrony, health check."""
    from kubeplay.bootstrap.context import prepare_context
    from kubeplay.bootstrap.paths import HostPaths
    from kubeplay.bootstrap.steps import foreground, run_install

    out = get_output()
    no_systemd = settings.from_environ().no_systemd if no_systemd is None else no_systemd
    paths = HostPaths(state_override=state_dir)
    ctx = prepare_context(config, (bundle or _default_bundle(config)).resolve(), paths, no_systemd)
    if ctx.cfg.internal_ip_detected:
        out.info(f"compose.internal_ip is empty: using {ctx.cfg.internal_ip} (the primary address)")
    try:
        results = run_install(ctx, from_step=from_step)
        ran = sum(1 for _, m in results if m != "done earlier, inputs unchanged")
        out.summary(
            f"serving https://{ctx.cfg.registry_url} and {ctx.cfg.offline_resources_url}: "
            f"{ran} step(s) run, {len(results) - ran} already done; effective config in {paths.effective_config}"
        )
        if no_systemd:
            out.info("serving in the foreground (--no-systemd); Ctrl-C stops registry and nginx")
            foreground().wait()
    finally:
        foreground().stop()


def uninstall(
    purge_packages: Annotated[
        bool, typer.Option("--purge-packages", help="Also remove OS packages install added.")
    ] = False,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", envvar=settings.STATE_DIR, help=STATE_HELP)] = None,
) -> None:
    """Remove everything install added (units, configs, hosts lines, CA trust, repo entries) and nothing else."""
    from kubeplay.bootstrap.hostinfo import is_root, systemd_running
    from kubeplay.bootstrap.paths import HostPaths
    from kubeplay.bootstrap.record import InstallRecord
    from kubeplay.bootstrap.uninstall import uninstall as run_uninstall

    out = get_output()
    paths = HostPaths(state_override=state_dir)
    if not is_root():
        raise BadInput("uninstall must run as root", hint="run it with sudo")
    if not InstallRecord.load(paths.record).items:
        out.summary(f"nothing to remove: no install record in {paths.state}")
        return
    done = run_uninstall(paths, systemd_running(), purge_packages, note=out.warn)
    for line in done:
        out.info(f"  {line}")
    out.summary(f"uninstalled: {len(done)} change(s) undone")


def status(
    bundle: Annotated[Path | None, typer.Option("--bundle", envvar=settings.BUNDLE, help="Unpacked bundle.")] = None,
    probe: Annotated[bool, typer.Option("--probe/--no-probe", help="Probe the services once, as a node would.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", envvar=settings.STATE_DIR, help=STATE_HELP)] = None,
) -> None:
    """Which install steps are done, whether the services run, and whether they answer."""
    from rich.table import Table

    from kubeplay.bootstrap.paths import HostPaths
    from kubeplay.bootstrap.status import collect_status

    out = get_output()
    report = collect_status(HostPaths(state_override=state_dir), bundle, probe)
    if json_out:
        typer.echo(json.dumps(report, indent=2))
    else:
        table = Table("step", "done at", box=None)
        for name, when in report["steps"].items():
            table.add_row(name, when or "[yellow]pending[/]")
        out.console.print(table)
        for key in ("units", "certificate_expires", "registry", "files", "health"):
            if key in report:
                out.console.print(f"{key}: {report[key]}")
    done = sum(1 for when in report["steps"].values() if when)
    healthy = report.get("healthy")
    out.summary(f"{done}/{len(report['steps'])} steps recorded" + ("" if healthy is None else f"; healthy: {healthy}"))
    if healthy is False:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("install")(install)
    app.command("uninstall")(uninstall)
    app.command("status")(status)
