"""`kubeplay install`, `kubeplay uninstall`, `kubeplay status`: the deploy node serving the bundle."""

# ruff: noqa: PLC0415  (kubeplay subpackages are imported in the command that uses them: fast start-up)

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kubeplay import settings
from kubeplay.cli.output import command_output
from kubeplay.errors import BadInput

# Shown in the --from help, which typer builds at start-up for every command. A copy of
# kubeplay.bootstrap.steps.STEP_NAMES: importing that module here would load cryptography and pydantic
# on every kubeplay run. run_install checks --from against the real list.
STEP_NAMES = (
    "preflight",
    "os-packages",
    "serve",
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

ServedOpt = Annotated[
    Path | None,
    typer.Option(
        "--served",
        envvar=settings.SERVED,
        help="Where this node keeps what it serves (default: served/ in the state directory).",
    ),
]
STATE_HELP = "Where install keeps its ledger and record (default /var/lib/kubeplay)."
STEPS_HELP = ", ".join(STEP_NAMES)


def _default_bundle(config: Path) -> Path:
    for candidate in (config.resolve().parent, Path.cwd()):
        if (candidate / "kubeplay.json").exists():
            return candidate
    return Path.cwd()


def install(
    ctx: typer.Context,
    config: Annotated[Path, typer.Option("--config", "-c", envvar=settings.CONFIG, help="config.yaml")] = Path(
        "config.yaml"
    ),
    bundle: Annotated[
        Path | None,
        typer.Option("--bundle", envvar=settings.BUNDLE, help="Unpacked bundle (default: beside config.yaml, or .)."),
    ] = None,
    from_step: Annotated[
        str | None, typer.Option("--from", help=f"Re-run from this step on, even if done: {STEPS_HELP}.")
    ] = None,
    only: Annotated[
        str | None, typer.Option("--only", help="Run just this step (after preflight), even if done.")
    ] = None,
    to_step: Annotated[str | None, typer.Option("--to", help="Stop after this step.")] = None,
    no_systemd: Annotated[
        bool | None,
        typer.Option(
            "--no-systemd",
            help="Where systemd is not PID 1: run registry and nginx as child processes and serve in the foreground "
            f"(env {settings.NO_SYSTEMD}).",
        ),
    ] = None,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", envvar=settings.STATE_DIR, help=STATE_HELP)] = None,
    served: ServedOpt = None,
) -> None:
    """Serve the bundle from this deploy node: OS repo, certificates, registry, nginx, chrony, health check."""
    from kubeplay.bootstrap.context import prepare_context
    from kubeplay.bootstrap.paths import HostPaths
    from kubeplay.bootstrap.steps import foreground, run_install
    from kubeplay.steps import Selection

    out = command_output(ctx)
    no_systemd = settings.from_environ().no_systemd if no_systemd is None else no_systemd
    paths = HostPaths(state_override=state_dir, served_override=served)
    host = prepare_context(config, (bundle or _default_bundle(config)).resolve(), paths, no_systemd, out)
    if host.cfg.internal_ip_detected:
        out.info(f"compose.internal_ip is empty: using {host.cfg.internal_ip} (the primary address)")
    try:
        results = run_install(host, Selection(from_step, only, to_step))
        ran = sum(1 for r in results if r.ran)
        out.summary(
            f"serving https://{host.cfg.registry_url} and {host.cfg.offline_resources_url}: "
            f"{ran} step(s) run, {len(results) - ran} already done; effective config in {paths.effective_config}"
        )
        if no_systemd:
            out.info("serving in the foreground (--no-systemd); Ctrl-C stops registry and nginx")
            foreground().wait(on_restart=lambda name: out.warn(f"{name} exited; started it again"))
    finally:
        foreground().stop()


def uninstall(
    ctx: typer.Context,
    purge_packages: Annotated[
        bool, typer.Option("--purge-packages", help="Also remove OS packages install added.")
    ] = False,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", envvar=settings.STATE_DIR, help=STATE_HELP)] = None,
    served: ServedOpt = None,
) -> None:
    """Remove everything install added (units, configs, hosts lines, CA trust, repo entries) and nothing else."""
    from kubeplay.bootstrap.hostinfo import is_root, systemd_running
    from kubeplay.bootstrap.paths import HostPaths
    from kubeplay.bootstrap.record import InstallRecord
    from kubeplay.bootstrap.uninstall import read_bootstrap
    from kubeplay.bootstrap.uninstall import uninstall as run_uninstall

    out = command_output(ctx)
    paths = HostPaths(state_override=state_dir, served_override=served)
    if not is_root():
        raise BadInput("uninstall must run as root", hint="run it with sudo")
    if not InstallRecord.load(paths.record).items and read_bootstrap(paths.state) is None:
        out.summary(f"nothing to remove: no install record in {paths.state}")
        return
    done = run_uninstall(paths, systemd_running(), purge_packages, note=out.warn)
    for line in done:
        out.info(f"  {line}")
    out.summary(f"uninstalled: {len(done)} change(s) undone")


def status(
    ctx: typer.Context,
    bundle: Annotated[Path | None, typer.Option("--bundle", envvar=settings.BUNDLE, help="Unpacked bundle.")] = None,
    probe: Annotated[bool, typer.Option("--probe/--no-probe", help="Probe the services once, as a node would.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    inventory: Annotated[
        bool,
        typer.Option(
            "--inventory", help="Write what this node serves, as digests, for `kubeplay build --base` (see -o)."
        ),
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="With --inventory: the file to write (default: stdout).")
    ] = None,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", envvar=settings.STATE_DIR, help=STATE_HELP)] = None,
    served: ServedOpt = None,
) -> None:
    """Which install steps are done, which versions are served, whether the services run and answer."""
    from kubeplay.bootstrap.paths import HostPaths
    from kubeplay.bootstrap.status import collect_status
    from kubeplay.console import Cell, Table, human_bytes

    out = command_output(ctx)
    if inventory:
        from kubeplay.bootstrap.served import served_inventory
        from kubeplay.bundle.inventory import write_inventory

        inv = served_inventory(HostPaths(state_override=state_dir, served_override=served))
        if output is None:
            typer.echo(inv.model_dump_json(indent=1))
        else:
            write_inventory(inv, output)
        size = sum(e.size for e in inv.paths.values())
        out.summary(
            f"inventory of {inv.describe()}: {len(inv.paths)} paths ({human_bytes(size)} served), "
            f"{len(inv.images)} images, {len(inv.packages)} OS packages"
            + (f" -> {output} ({human_bytes(output.stat().st_size)})" if output is not None else "")
        )
        return
    elif output is not None:
        raise BadInput("--output/-o goes with --inventory", hint="kubeplay status --inventory -o inventory.json")
    report = collect_status(HostPaths(state_override=state_dir, served_override=served), bundle, probe)
    if json_out:
        typer.echo(json.dumps(report, indent=2))
    else:
        table = Table(columns=("step", "done at"), boxed=False)
        for name, when in report["steps"].items():
            table.add(name, when or Cell("pending", "warn"))
        out.table(table)
        if report.get("versions"):
            versions = Table(columns=("served Kubernetes", "kubespray", "bundle", "installed", "as"), boxed=False)
            for v in report["versions"]:
                came = f"delta of {', '.join(b[:12] for b in v['delta_of'])}" if v["delta_of"] else "full bundle"
                versions.add(
                    v["kube_version"], v["kubespray_version"], v["identity"][:12], v["installed_at"][:19], came
                )
            out.table(versions)
        for key in ("units", "certificate_expires", "registry", "files", "health"):
            if key in report:
                out.line(f"{key}: {report[key]}")
        for name, svc in report.get("services", {}).items():
            restarts = f"restarted {svc['restarts']} time(s), last at {svc['last_restart']}" if svc["restarts"] else ""
            exited = f" (exit status {svc['last_exit']})" if svc.get("last_exit") is not None else ""
            out.line(
                f"service {name}: {svc['state']}, pid {svc['pid']}, {restarts or 'never restarted'}{exited}"
                f" [{svc['manager']}]"
            )
    done = sum(1 for when in report["steps"].values() if when)
    healthy = report.get("healthy")
    out.summary(f"{done}/{len(report['steps'])} steps recorded" + ("" if healthy is None else f"; healthy: {healthy}"))
    if healthy is False:
        raise typer.Exit(1)


def prune(
    ctx: typer.Context,
    keep: Annotated[
        list[str],
        typer.Option("--keep", help="A served Kubernetes version (or bundle identity) to keep; repeat, or a,b."),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; change nothing.")] = False,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", envvar=settings.STATE_DIR, help=STATE_HELP)] = None,
    served: ServedOpt = None,
) -> None:
    """Stop serving every version not kept, and delete what only those versions used."""
    from kubeplay.bootstrap.paths import HostPaths
    from kubeplay.bootstrap.prune import prune as run_prune
    from kubeplay.console import human_bytes

    out = command_output(ctx)
    names = [k.strip() for item in keep for k in item.split(",") if k.strip()]
    result = run_prune(HostPaths(state_override=state_dir, served_override=served), names, dry_run=dry_run)
    if not result.removed:
        out.summary(f"nothing to prune: this node serves only {', '.join(result.kept)}")
        return
    verb = "would remove" if dry_run else "removed"
    out.summary(
        f"{verb} Kubernetes {', '.join(result.removed)}: {result.files} file(s), {human_bytes(result.bytes)}; "
        f"serving {', '.join(result.kept)}"
    )


def register(app: typer.Typer) -> None:
    app.command("install")(install)
    app.command("uninstall")(uninstall)
    app.command("status")(status)
    app.command("prune")(prune)
