"""The `kubeplay` command: registers the command modules and turns expected errors into exit codes."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

import kubeplay.cli as cli_package
from kubeplay import __version__
from kubeplay.console import Output, install
from kubeplay.errors import KubeplayError

app = typer.Typer(
    name="kubeplay",
    help="Offline Kubernetes: build one bundle from kubespray's own definitions, serve it, deploy it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kubeplay {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    quiet: bool = typer.Option(False, "--quiet", "-q", envvar="KUBEPLAY_QUIET", help="No progress output."),
    json_events: bool = typer.Option(
        False, "--json-events", envvar="KUBEPLAY_JSON_EVENTS", help="One JSON event per line on stdout."
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print version."),
) -> None:
    out = ctx.obj if isinstance(ctx.obj, Output) else install(Output())
    out.quiet = quiet
    out.json_events = json_events
    ctx.obj = out


def _register() -> None:
    # Each command module has a register(app); discovering them keeps app.py free of edits per command.
    for mod in sorted(pkgutil.iter_modules(cli_package.__path__), key=lambda m: m.name):
        if mod.name != "app":
            module = importlib.import_module(f"kubeplay.cli.{mod.name}")
            register = getattr(module, "register", None)
            if register is not None:
                register(app)


_register()


def main() -> None:
    """Run the CLI; a KubeplayError becomes one red line, a hint, and its exit code."""
    out = install(Output())
    try:
        app(standalone_mode=True, obj=out)
    except KubeplayError as exc:
        out.error(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        out.error("interrupted; work done so far is kept, run the same command again to resume")
        sys.exit(130)
