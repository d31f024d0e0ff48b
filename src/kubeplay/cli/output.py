"""The Output a command prints through: the one `main` made, carried on typer's context."""

from __future__ import annotations

import typer

from kubeplay.console import Output


def command_output(ctx: typer.Context) -> Output:
    """The command's Output (the root callback puts it on the context; a bare test invocation gets a fresh one)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Output):
        root.obj = Output()
    return root.obj
