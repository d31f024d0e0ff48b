"""Images kubespray uses outside `downloads:`: every pattern for `--all`, by role for gates.py.

Some roles put images straight into manifests (`image: {{ kube_ovn_vpc_container_image_repo }}:{{ ... }}`,
`{{ azure_csi_image_repo }}/csi-attacher:{{ azure_csi_attacher_image_tag }}`), so neither the download role
nor generate_list.sh sees them. kubeplay finds every `{{ *_repo }}[/path]:{{ *_tag }}` pair in the roles'
templates, tasks and defaults, plus every `X_image_repo`/`X_image_tag` pair of variables, and renders them
with the defaults of every role in scope (lowest precedence). Pairs that do not render are skipped: they
belong to roles whose settings the plan does not model.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeplay.catalog.entries import RenderedEntries, RenderedImage
from kubeplay.catalog.locations import LocationError, check_tag, parse_image_name
from kubeplay.catalog.rolevars import parse_variable_file, variable_files
from kubeplay.catalog.source import KubesprayTree
from kubeplay.catalog.templating import TemplateFailure, VariableScope
from kubeplay.errors import KubeplayError

PAIR_RE = re.compile(r"\{\{\s*(\w+_repo)\s*\}\}([\w./-]*):\{\{\s*(\w+_tag)\s*\}\}")
SCANNED_SUFFIXES = (".j2", ".yml", ".yaml")
ROLE_PARTS = frozenset({"templates", "tasks", "defaults", "vars", "files", "handlers", "meta"})

_images: dict[Path, list[RoleImage]] = {}


@dataclass(frozen=True)
class RoleImage:
    """An image reference pattern found in a file under roles/, and the role (path below roles/) it is in:
    None for a file outside any role's standard directories."""

    role: str | None
    name: str
    repo: str
    tag: str
    repo_variable: str


def role_of(path: Path, roles_root: Path) -> str | None:
    """`roles/a/b/templates/x.j2` -> "a/b"; None for a file outside any role's standard directories."""
    parts = path.relative_to(roles_root).parts
    for i, part in enumerate(parts):
        if part in ROLE_PARTS and i > 0:
            return "/".join(parts[:i])
    return None


def role_images(tree: KubesprayTree) -> list[RoleImage]:
    """Every `{{ x_repo }}[/path]:{{ x_tag }}` in the roles' templates, tasks and defaults, with its role;
    one per (role, pattern), in path order. Scanned once per tree."""
    if tree.root not in _images:
        roots = tree.root / "roles"
        found: dict[tuple[str | None, str, str], RoleImage] = {}
        for path in sorted(roots.rglob("*")):
            if path.suffix not in SCANNED_SUFFIXES or not path.is_file() or "molecule" in path.parts:
                continue
            role = role_of(path, roots)
            for match in PAIR_RE.finditer(path.read_text(encoding="utf-8", errors="replace")):
                repo_var, suffix, tag_var = match.groups()
                repo, tag = f"{{{{ {repo_var} }}}}{suffix}", f"{{{{ {tag_var} }}}}"
                name = tag_var.removesuffix("_image_tag").removesuffix("_tag")
                found.setdefault((role, repo, tag), RoleImage(role, name, repo, tag, repo_var))
        _images[tree.root] = list(found.values())
    return _images[tree.root]


def other_role_defaults(tree: KubesprayTree) -> dict[str, Any]:
    """Defaults of every role in the tree (roles later in path order win), for rendering extras only."""
    merged: dict[str, Any] = {}
    for defaults in sorted((tree.root / "roles").glob("**/defaults")):
        if "molecule" in defaults.parts:
            continue
        for path in variable_files(defaults.parent, "defaults"):
            try:
                merged.update(parse_variable_file(path))
            except KubeplayError:
                continue
    return merged


def image_pairs(tree: KubesprayTree, raw: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(name, repo template, tag template) for every image reference pattern in the tree, deduplicated."""
    found: dict[tuple[str, str], str] = {}
    for image in role_images(tree):
        found.setdefault((image.repo, image.tag), image.name)
    pairs = [(name, repo, tag) for (repo, tag), name in found.items()]
    scanned = {repo for _, repo, _ in pairs}
    for name in raw:
        used_as_prefix = any(repo.startswith(f"{{{{ {name} }}}}") for repo in scanned)
        if name.endswith("_image_repo") and f"{name.removesuffix('_repo')}_tag" in raw and not used_as_prefix:
            prefix = name.removesuffix("_image_repo")
            pairs.append((prefix, f"{{{{ {name} }}}}", f"{{{{ {prefix}_image_tag }}}}"))
    return pairs


def render_extra_images(scope: VariableScope, pairs: list[tuple[str, str, str]]) -> RenderedEntries:
    out = RenderedEntries()
    for name, repo_template, tag_template in pairs:
        for repo, tag in candidates(scope, repo_template, tag_template):
            out.images.append(RenderedImage(name, repo, tag, None, (), repo_template.strip("{} ").split()[0]))
    return out


def candidates(scope: VariableScope, repo_template: str, tag_template: str) -> Iterator[tuple[str, str]]:
    try:
        repo = scope.template(repo_template)
        tag = scope.template(tag_template)
    except (TemplateFailure, Exception):  # noqa: BLE001 - extras are best effort by design
        return
    if not isinstance(repo, str) or not isinstance(tag, str | int | float) or not repo or tag in ("", "None"):
        return
    try:
        parse_image_name(repo)
        check_tag(str(tag))
    except LocationError:
        return
    yield repo, str(tag)
