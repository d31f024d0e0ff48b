"""The `kubeplay` command: registers the command modules and turns expected errors into exit codes.

Errors reach the user in one place, `main`: a KubeplayError becomes one red line, its hint, and its exit
code (errors.py lists them). Ctrl-C inside a command becomes errors.Interrupted (exit 130) in the root
group, before typer would turn it into a silent exit 130; the library may raise a more precise one.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Any

import typer
from typer._click import Context
from typer.core import TyperGroup

import kubeplay.cli as cli_package
from kubeplay import __version__, settings
from kubeplay.console import Output
from kubeplay.errors import Interrupted, KubeplayError


class _Commands(TyperGroup):
    """The root group: a KeyboardInterrupt escaping a command becomes Interrupted, naming the command."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            name = f"kubeplay {ctx.invoked_subcommand}" if ctx.invoked_subcommand else "kubeplay"
            raise Interrupted(f"{name} interrupted; the work it finished is kept") from exc


app = typer.Typer(
    cls=_Commands,
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
    quiet: bool | None = typer.Option(None, "--quiet", "-q", help=f"No progress output (env {settings.QUIET})."),
    json_events: bool | None = typer.Option(
        None, "--json-events", help=f"One JSON event per line on stdout (env {settings.JSON_EVENTS})."
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print version."),
) -> None:
    out = ctx.obj if isinstance(ctx.obj, Output) else Output()
    env = settings.from_environ()  # the one boolean parser for KUBEPLAY_QUIET/KUBEPLAY_JSON_EVENTS
    out.quiet = env.quiet if quiet is None else quiet
    out.json_events = env.json_events if json_events is None else json_events
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
    out = Output()
    try:
        app(standalone_mode=True, obj=out)
    except KubeplayError as exc:
        out.error(exc.message, exc.hint)
        sys.exit(exc.exit_code)
