"""The kubespray variables that point every download at the deploy node, generated from the bundle.

kubespray's own offline variables are used, never new ones: `files_repo` and `registry_host` (as in
kubespray's inventory/sample/group_vars/all/offline.yml), the base URLs (`github_url`, `dl_k8s_io_url`,
`storage_googleapis_url`, `get_helm_url`), the `*_image_repo` variables, and `containerd_registries_mirrors`
in the containerd role's format (roles/container-engine/containerd/templates/hosts.toml.j2). Values keep
`{{ files_repo }}` / `{{ registry_host }}` as Ansible templates, so overriding one variable moves them all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kubeplay.errors import BadInput

CA_ON_NODE = "/etc/kubeplay-node/rootCA.crt"
# Upstream registry -> the kubespray variable every image of that registry is built from.
REGISTRY_VARIABLES = {
    "registry.k8s.io": "kube_image_repo",
    "gcr.io": "gcr_image_repo",
    "docker.io": "docker_image_repo",
    "quay.io": "quay_image_repo",
    "ghcr.io": "github_image_repo",
}
# kubespray's base download URLs -> the host directory under files/ that holds what they serve.
BASE_URLS = {
    "github_url": "github.com",
    "dl_k8s_io_url": "dl.k8s.io",
    "storage_googleapis_url": "storage.googleapis.com",
    "get_helm_url": "get.helm.sh",
}
# Keys of config.yaml's `default:` section that are kubespray variables of the same name.
PASS_THROUGH_DEFAULTS = (
    "download_container",
    "cilium_enable_hubble",
    "cilium_hubble_install",
    "cilium_hubble_tls_generate",
    "cilium_kube_proxy_replacement",
)
_PLACEHOLDER = re.compile(r"\{\{\s*(files_repo|registry_host)\s*\}\}")


@dataclass(frozen=True)
class DeployEndpoint:
    """Where the deploy node serves the bundle, as nodes reach it."""

    internal_ip: str
    nginx_http_port: int
    registry_domain: str
    registry_https_port: int = 443
    image_project: str = "library"

    @property
    def files_repo(self) -> str:
        host = f"[{self.internal_ip}]" if ":" in self.internal_ip else self.internal_ip
        return f"http://{host}:{self.nginx_http_port}/files"

    @property
    def repos_url(self) -> str:
        return self.files_repo.removesuffix("/files") + "/repos"

    @property
    def registry_host(self) -> str:
        port = "" if self.registry_https_port == 443 else f":{self.registry_https_port}"
        return f"{self.registry_domain}{port}"


def normalize_version(v: str) -> str:
    return str(v).strip().removeprefix("v")


def check_kube_version(config_version: str | None, bundle_version: str, where: str = "config.yaml") -> None:
    """Raise BadInput when config.yaml asks for a kube_version the bundle does not carry."""
    if config_version is None or not str(config_version).strip():
        return
    if normalize_version(config_version) != normalize_version(bundle_version):
        raise BadInput(
            f"{where}: kubespray.kube_version is {config_version} but the bundle carries Kubernetes "
            f"{normalize_version(bundle_version)}; nothing was changed on any host",
            hint=f"remove kubespray.kube_version from config.yaml or set it to {normalize_version(bundle_version)}",
        )


def upstream_registries(image_repositories: list[tuple[str, str]], project: str) -> dict[str, str]:
    """{upstream registry: bundle path prefix} from (upstream reference, bundle repository) pairs.

    A bundle repository is `<project>/<upstream host>/<path>` (../shared/DESIGN.md), so the prefix for
    docker.io is `<project>/docker.io`.
    """
    out: dict[str, str] = {}
    for upstream, repository in image_repositories:
        host = upstream.split("/", 1)[0]
        parts = repository.split("/")
        if len(parts) >= 2 and parts[1] == host:
            out.setdefault(host, f"{parts[0]}/{host}")
        else:
            out.setdefault(host, f"{project}/{host}")
    return dict(sorted(out.items()))


def containerd_mirrors(registries: dict[str, str], ca_path: str = CA_ON_NODE) -> list[dict[str, Any]]:
    """containerd_registries_mirrors: the bundle registry by its own name, and each upstream registry
    redirected into its path on the bundle registry (override_path), all verified with the bundle CA."""
    mirrors: list[dict[str, Any]] = [
        {
            "prefix": "{{ registry_host }}",
            "server": "https://{{ registry_host }}",
            "mirrors": [
                {
                    "host": "https://{{ registry_host }}",
                    "capabilities": ["pull", "resolve"],
                    "skip_verify": False,
                    "ca": [ca_path],
                }
            ],
        }
    ]
    for upstream, prefix in registries.items():
        mirrors.append(
            {
                "prefix": upstream,
                "mirrors": [
                    {
                        "host": f"https://{{{{ registry_host }}}}/v2/{prefix}",
                        "capabilities": ["pull", "resolve"],
                        "skip_verify": False,
                        "override_path": True,
                        "ca": [ca_path],
                    }
                ],
            }
        )
    return mirrors


def base_offline_vars(project: str, registries: dict[str, str]) -> dict[str, Any]:
    """Redirects that hold for any bundle: base URLs into files/, image repos into the bundle registry."""
    out: dict[str, Any] = {name: f"{{{{ files_repo }}}}/{host}" for name, host in BASE_URLS.items()}
    for host, variable in REGISTRY_VARIABLES.items():
        out[variable] = f"{{{{ registry_host }}}}/{registries.get(host, f'{project}/{host}')}"
    return out


def offline_vars(
    endpoint: DeployEndpoint,
    kube_version: str,
    *,
    catalog_vars: dict[str, str],
    image_repositories: list[tuple[str, str]],
    config_vars: dict[str, Any],
    config_defaults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The group vars kubespray runs with: offline redirects, then config.yaml's `kubespray:` on top.

    `catalog_vars` are the plan's/manifest's offline_vars (with `{{ files_repo }}`/`{{ registry_host }}`
    placeholders, which are kubespray variables and stay templates). Raise BadInput on a kube_version clash.
    """
    check_kube_version(config_vars.get("kube_version"), kube_version)
    registries = upstream_registries(image_repositories, endpoint.image_project)
    out: dict[str, Any] = {
        "files_repo": endpoint.files_repo,
        "registry_host": endpoint.registry_host,
        **base_offline_vars(endpoint.image_project, registries),
        **catalog_vars,
        "kube_version": normalize_version(kube_version),
        "containerd_registries_mirrors": containerd_mirrors(registries),
    }
    for key in PASS_THROUGH_DEFAULTS:
        if config_defaults and key in config_defaults:
            out[key] = config_defaults[key]
    for key, value in config_vars.items():
        if value is not None and key != "kube_version":
            out[key] = value
    return out


def render_placeholders(value: Any, endpoint: DeployEndpoint) -> Any:
    """`value` with `{{ files_repo }}` and `{{ registry_host }}` replaced, as Ansible would render them."""
    if isinstance(value, str):
        subst = {"files_repo": endpoint.files_repo, "registry_host": endpoint.registry_host}
        return _PLACEHOLDER.sub(lambda m: subst[m.group(1)], value)
    if isinstance(value, list):
        return [render_placeholders(v, endpoint) for v in value]
    if isinstance(value, dict):
        return {k: render_placeholders(v, endpoint) for k, v in value.items()}
    return value
