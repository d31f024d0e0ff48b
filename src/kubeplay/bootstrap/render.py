"""Render the deploy node's configuration files from the Jinja2 templates shipped in this package."""

from __future__ import annotations

from typing import Any

import jinja2

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("kubeplay.bootstrap", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # noqa: S701 - these are config files, not HTML
)


def render(template: str, **context: Any) -> str:
    """The rendered text of `template`; a missing variable raises instead of rendering empty."""
    return _ENV.get_template(template).render(**context)
