"""Images kubespray's enabled roles use outside `downloads:`, for the normal (not `--all`) plan.

Some roles put an image straight into a manifest and never list it in `downloads:` (v2.31: the
local-path-provisioner's helper `busybox`, the Huawei and Oracle cloud controllers). kubespray leaves
them to the kubelet to pull, which an air gap cannot. kubeplay bundles such an image when its role would
run for this configuration: a role pulled in by another role — a `meta/main.yml` dependency, or an
`include_role`/`import_role` task, whose name may be a template (`network_plugin/{{ kube_network_plugin }}`)
— runs when every `when:` on the way to it holds (`local_path_provisioner_enabled`,
`cloud_provider == "external" and external_cloud_provider == "oci"`, `kube_network_plugin == 'kube-ovn'`).
A role nothing pulls in is one a playbook lists: it runs. Conditions that depend on the host (`inventory_hostname`, `groups`,
`hostvars`, ...) hold for some host, so they count as true; a condition that cannot be evaluated counts
as true as well: a spare image in the bundle costs bytes, a missing one fails the site.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import yaml

from kubeplay.catalog.entries import RenderedEntries, RenderedImage
from kubeplay.catalog.extras import RoleImage, candidates, role_of
from kubeplay.catalog.rolevars import Loader
from kubeplay.catalog.source import KubesprayTree
from kubeplay.catalog.templating import TemplateFailure, VariableScope

# Names whose value differs per host: a condition reading one of them holds for some host.
HOST_NAMES = frozenset({"inventory_hostname", "inventory_hostname_short", "groups", "group_names", "hostvars", "item"})
MAX_DEPTH = 16

_JINJA = jinja2.Environment(autoescape=False)  # noqa: S701 - only parsed to list names, never rendered


@dataclass(frozen=True)
class Inclusion:
    """One place a role is pulled in by `parent` (meta dependency or include_role task), under `when`."""

    parent: str
    when: tuple[str, ...]
    name: str  # the included role's name as written; may be a template


INCLUDE_MODULES = tuple(
    f"{prefix}{verb}_role" for prefix in ("", "ansible.builtin.", "ansible.legacy.") for verb in ("include", "import")
)


def _name_pattern(written: str) -> re.Pattern[str]:
    """`network_plugin/{{ kube_network_plugin }}` -> a regex matching any role that name could render to."""
    parts = re.split(r"\{\{.*?\}\}", written)
    return re.compile("[^/]+".join(re.escape(part) for part in parts))


def _when_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    return tuple(str(item) for item in items)


_inclusions: dict[Path, dict[str, list[Inclusion]]] = {}


def _load_yaml(path: Path, needle: str | None = None) -> Any:
    """The file's YAML; None when it does not parse, or does not contain `needle` (a cheap pre-check)."""
    try:
        text = path.read_text(encoding="utf-8")
        return None if needle is not None and needle not in text else yaml.load(text, Loader=Loader)  # noqa: S506 - a safe loader
    except (yaml.YAMLError, UnicodeDecodeError):
        return None


def _task_inclusions(tasks: Any, parent: str, outer: tuple[str, ...]) -> Iterator[Inclusion]:
    """include_role/import_role tasks in a task list, blocks included (their `when` applies inside)."""
    for task in tasks if isinstance(tasks, list) else []:
        if not isinstance(task, Mapping):
            continue
        when = outer + _when_list(task.get("when"))
        for key in ("block", "rescue", "always"):
            if key in task:
                yield from _task_inclusions(task[key], parent, when)
        for module in INCLUDE_MODULES:
            args = task.get(module)
            if isinstance(args, Mapping) and isinstance(args.get("name"), str):
                yield Inclusion(parent, when, args["name"].strip())


def role_inclusions(tree: KubesprayTree) -> dict[str, list[Inclusion]]:
    """Role name as written (literal or template) -> every place a role pulls it in, with the `when`s."""
    if tree.root not in _inclusions:
        _inclusions[tree.root] = _scan_inclusions(tree.root / "roles")
    return _inclusions[tree.root]


def _scan_inclusions(roots: Path) -> dict[str, list[Inclusion]]:
    found: list[Inclusion] = []
    for meta in sorted(roots.glob("**/meta/main.yml")):
        parent = role_of(meta, roots)
        body = _load_yaml(meta)
        deps = body.get("dependencies") if isinstance(body, Mapping) else None
        if parent is None or "molecule" in meta.parts or not isinstance(deps, list):
            continue
        for dep in deps:
            name = (dep.get("role") or dep.get("name")) if isinstance(dep, Mapping) else dep
            if isinstance(name, str):
                when = _when_list(dep.get("when")) if isinstance(dep, Mapping) else ()
                found.append(Inclusion(parent, when, name.strip()))
    for tasks in sorted(roots.glob("**/tasks/**/*.yml")):
        parent = role_of(tasks, roots)
        if parent is not None and "molecule" not in tasks.parts:
            found.extend(_task_inclusions(_load_yaml(tasks, needle="_role"), parent, ()))
    out: dict[str, list[Inclusion]] = {}
    for inclusion in found:
        out.setdefault(inclusion.name, []).append(inclusion)
    return out


class RoleGates:
    """Whether a role runs for one configuration (one VariableScope), from the chains that pull it in."""

    def __init__(self, inclusions: Mapping[str, list[Inclusion]], scope: VariableScope) -> None:
        self.scope = scope
        self._memo: dict[str, bool] = {}
        self.literal = {name: ways for name, ways in inclusions.items() if "{{" not in name}
        # A templated name could pull in any role its pattern matches; in this configuration it pulls in
        # only the one it renders to (or none, when it does not render).
        self.templated = [
            (_name_pattern(name), self._render_name(name), ways) for name, ways in inclusions.items() if "{{" in name
        ]

    def _render_name(self, written: str) -> str | None:
        try:
            value = self.scope.template(written)
        except (TemplateFailure, Exception):  # noqa: BLE001 - an unknown name includes no known role
            return None
        return value.strip() if isinstance(value, str) else None

    def ways_to(self, role: str) -> tuple[list[Inclusion], bool]:
        """(inclusions that pull `role` in for this configuration, whether anything could pull it in at all)."""
        ways = [w for w in self.literal.get(role, []) if w.parent != role]
        possible = bool(ways)
        for pattern, rendered, templated in self.templated:
            if pattern.fullmatch(role):
                possible = True
                if rendered == role:
                    ways += [w for w in templated if w.parent != role]
        return ways, possible

    def condition_holds(self, condition: str) -> bool:
        try:
            names = jinja2.meta.find_undeclared_variables(_JINJA.parse(f"{{{{ {condition} }}}}"))
        except jinja2.TemplateSyntaxError:
            return True
        if names & HOST_NAMES:
            return True
        try:
            value = self.scope.template(f"{{{{ ({condition}) | bool }}}}")
        except (TemplateFailure, Exception):  # noqa: BLE001 - unknown counts as true (see the module doc)
            return True
        return value is not False and str(value) != "False"

    def runs(self, role: str, depth: int = 0) -> bool:
        """True when some chain to `role` has every condition true (a role nothing pulls in runs)."""
        if role in self._memo:
            return self._memo[role]
        ways, possible = self.ways_to(role)
        if not possible or depth > MAX_DEPTH:
            result = True
        else:
            result = any(
                all(self.condition_holds(c) for c in way.when) and self.runs(way.parent, depth + 1) for way in ways
            )
        self._memo[role] = result
        return result


def gated_images(images: list[RoleImage], gates: RoleGates, scope: VariableScope) -> RenderedEntries:
    """The role images whose role runs, rendered; patterns that do not render are skipped."""
    out = RenderedEntries()
    for image in images:
        if image.role is None or not gates.runs(image.role):
            continue
        for repo, tag in candidates(scope, image.repo, image.tag):
            out.images.append(RenderedImage(image.name, repo, tag, None, (), image.repo_variable))
    return out
