"""The kubespray variables that send every download to the deploy node instead of the internet.

Follows kubespray's docs/operations/offline-environment.md: files come from `{{ files_repo }}/<host>/<path>`
(`github_url: "{{ files_repo }}/github.com"`), images from `{{ registry_host }}`. kubeplay adds the registry
project and the upstream host to every root `*_image_repo`, which matches where the bundle stores images:
`kube_image_repo: "{{ registry_host }}/library/registry.k8s.io"`.

Only *root* variables are redirected: those whose raw value starts with a literal host. Variables built
from other variables (`kubelet_download_url: "{{ dl_k8s_io_url }}/..."`) follow automatically.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kubeplay.catalog.dependencies import DependencyGraph
from kubeplay.catalog.locations import DOCKER_HUB, is_registry_host
from kubeplay.catalog.model import Plan
from kubeplay.catalog.rolevars import load_role_variables
from kubeplay.catalog.source import KubesprayTree
from kubeplay.catalog.templating import TemplateEngine

FILES_REPO = "{{ files_repo }}"
REGISTRY_HOST = "{{ registry_host }}"
BASE_URL_VARIABLES = ("github_url", "dl_k8s_io_url", "storage_googleapis_url", "get_helm_url")
URL_SUFFIXES = ("_download_url", "_install_url")
LITERAL_URL_RE = re.compile(r"^https?://([A-Za-z0-9.-]+(?::\d+)?)(/.*)?$", re.S)
LITERAL_REPO_RE = re.compile(r"^([A-Za-z0-9._-]+(?::\d+)?)(/.*)?$", re.S)
KUBEADM_REPO_VARIABLES = ("kubeadm_image_repo", "kube_image_repo", "etcd_image_repo")


def redirect_url(value: Any) -> str | None:
    """`https://host/path{{ x }}` -> `{{ files_repo }}/host/path{{ x }}`; None unless the host is literal."""
    if not isinstance(value, str):
        return None
    match = LITERAL_URL_RE.match(value.strip())
    if not match:
        return None
    return f"{FILES_REPO}/{match.group(1)}{match.group(2) or ''}"


def redirect_image_repo(value: Any, project: str) -> str | None:
    """`quay.io` or `mcr.microsoft.com/k8s/csi` -> `{{ registry_host }}/<project>/<that>`; None if templated."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    match = LITERAL_REPO_RE.match(text)
    if not match:
        return None
    if not is_registry_host(match.group(1)):
        # Docker's implicit registry: "busybox" is docker.io/library/busybox.
        path = text if "/" in text.split("{{", 1)[0] else f"library/{text}"
        text = f"{DOCKER_HUB}/{path}"
    return f"{REGISTRY_HOST}/{project}/{text}"


def derive_offline_vars(raw: Mapping[str, Any], graph: DependencyGraph, project: str) -> dict[str, str]:
    """Offline overrides, with `{{ files_repo }}` / `{{ registry_host }}` placeholders, in file order."""
    downloads = raw.get("downloads")
    entries = [e for e in downloads.values() if isinstance(e, Mapping)] if isinstance(downloads, Mapping) else []
    url_reads: set[str] = set()
    repo_reads: set[str] = set(graph.closure_of_names([n for n in KUBEADM_REPO_VARIABLES if n in raw]))
    for entry in entries:
        url_reads |= graph.closure_of_value(entry.get("url"))
        repo_reads |= graph.closure_of_value(entry.get("repo"))
    result: dict[str, str] = {}
    for name, value in raw.items():
        if name in BASE_URL_VARIABLES or name.endswith(URL_SUFFIXES) or name in url_reads:
            redirected = redirect_url(value)
        elif name.endswith("_image_repo") or (name in repo_reads and name.endswith("_repo")):
            redirected = redirect_image_repo(value, project)
        else:
            continue
        if redirected is not None:
            result[name] = redirected
    return result


def offline_vars(
    source: Plan | KubesprayTree | Mapping[str, str],
    *,
    files_repo: str | None = None,
    registry_host: str | None = None,
    project: str = "library",
) -> dict[str, str]:
    """The offline variables of a plan (or a tree, or a mapping of them), with concrete values filled in.

    `files_repo` (e.g. "https://192.0.2.10:8443/files") and `registry_host` (e.g. "192.0.2.10:5443") replace
    the placeholders and are added as variables themselves; a None keeps that placeholder for kubespray to
    resolve from the inventory. `project` is used only when `source` is a tree.
    """
    if isinstance(source, Plan):
        templates: Mapping[str, str] = source.offline_vars
    elif isinstance(source, KubesprayTree):
        variables = load_role_variables(source)
        raw = {**variables.defaults, **variables.vars}
        templates = derive_offline_vars(raw, DependencyGraph(TemplateEngine(), raw), project)
    else:
        templates = source
    result: dict[str, str] = {}
    if files_repo is not None:
        result["files_repo"] = files_repo.rstrip("/")
    if registry_host is not None:
        result["registry_host"] = registry_host.rstrip("/")
    for name, template in templates.items():
        value = template
        if files_repo is not None:
            value = value.replace(FILES_REPO, files_repo.rstrip("/"))
        if registry_host is not None:
            value = value.replace(REGISTRY_HOST, registry_host.rstrip("/"))
        result[name] = value
    return result
