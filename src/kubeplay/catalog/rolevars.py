"""Read a role's defaults and vars the way Ansible finds them: main.yml, main.yaml or every file in main/."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubeplay.catalog.source import KubesprayTree
from kubeplay.errors import CatalogError, ConfigError

YAML_SUFFIXES = (".yml", ".yaml", ".json")
Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_parsed: dict[tuple[Path, int, int], dict[str, Any]] = {}


@dataclass
class RoleVariables:
    """Raw (unrendered) role defaults and role vars, and the file each variable came from."""

    defaults: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, Path] = field(default_factory=dict)


def parse_variable_file(path: Path) -> dict[str, Any]:
    """Parse one variables file; raise ConfigError with file:line:col on a YAML error."""
    stat = path.stat()
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key in _parsed:
        return _parsed[key]
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML error: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML error: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping of variables, found {type(data).__name__}")
    _parsed[key] = data
    return data


def variable_files(role: Path, kind: str) -> list[Path]:
    """The files Ansible loads for `<role>/<kind>/main`: main.yml/main.yaml, or main/ recursively, sorted."""
    base = role / kind
    files = [base / f"main{suffix}" for suffix in YAML_SUFFIXES if (base / f"main{suffix}").is_file()]
    folder = base / "main"
    if folder.is_dir():
        files += sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in YAML_SUFFIXES)
    return files


def load_role_variables(tree: KubesprayTree) -> RoleVariables:
    """Merge defaults and vars of every role the evaluator loads (later files win within a level)."""
    result = RoleVariables()
    for role in tree.variable_roles:
        for kind, target in (("defaults", result.defaults), ("vars", result.vars)):
            for path in variable_files(role, kind):
                data = parse_variable_file(path)
                target.update(data)
                for name in data:
                    result.origin[name] = path
    return result
