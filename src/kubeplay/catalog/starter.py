"""The commented bundle.yaml `kubeplay init` writes, filled with what the kubespray release says."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from kubeplay.catalog.choices import Choices, supported_choices
from kubeplay.catalog.planner import facts_for
from kubeplay.catalog.rolevars import load_role_variables
from kubeplay.catalog.source import KubesprayTree
from kubeplay.catalog.templating import TemplateEngine, VariableScope


@dataclass(frozen=True)
class ReleaseFacts:
    """What a release says about itself: defaults and the values it accepts."""

    version: str | None
    kube_version: str | None
    kube_versions: tuple[str, ...]
    network_plugin: str | None
    container_manager: str | None
    choices: Choices | None


def release_facts(tree: KubesprayTree) -> ReleaseFacts:
    variables = load_role_variables(tree)
    scope = VariableScope(TemplateEngine(), [variables.defaults, facts_for("amd64"), variables.vars])

    def text(name: str) -> str | None:
        value = scope[name] if name in scope.raw else None
        return str(value) if isinstance(value, str | int | float) else None

    table = scope["kubelet_checksums"] if "kubelet_checksums" in scope.raw else None
    versions = tuple(str(v) for v in table.get("amd64", {})) if isinstance(table, Mapping) else ()
    kube_version = text("kube_version")
    return ReleaseFacts(
        version=tree.version,
        kube_version=kube_version.removeprefix("v") if kube_version else None,
        kube_versions=tuple(v.removeprefix("v") for v in versions),
        network_plugin=text("kube_network_plugin"),
        container_manager=text("container_manager"),
        choices=supported_choices(tree),
    )


def flow(values: Sequence[str]) -> str:
    """A YAML flow list, quoting only what YAML would misread (e.g. `on`, `1.35`)."""
    return str(yaml.safe_dump(list(values), default_flow_style=True, width=1000)).strip()


def quoted(value: Any) -> str:
    return json.dumps(str(value))


def render_bundle_yaml(
    *,
    facts: ReleaseFacts,
    source: str,
    sha256: str | None,
    arches: Sequence[str],
    network_plugins: Sequence[str] | None = None,
    container_managers: Sequence[str] | None = None,
    kube_version: str | None = None,
    os_sources: Sequence[tuple[str, Sequence[str]]] = (),
) -> str:
    """A commented bundle.yaml; every value not given falls back to the release's own default.

    `os_sources` (url, suites) are the build host's own apt sources for the default OS target, written
    out so the user sees (and can change) which mirror the OS packages come from.
    """
    version = facts.version or "v0.0.0"
    plugins = list(network_plugins or [facts.network_plugin or "calico"])
    managers = list(container_managers or [facts.container_manager or "containerd"])
    kube = kube_version or facts.kube_version
    supported_kube = ", ".join(facts.kube_versions[:12]) + (" ..." if len(facts.kube_versions) > 12 else "")
    choices = facts.choices
    lines = [
        "# kubeplay bundle: everything one offline Kubernetes bundle holds.",
        "# Check it with `kubeplay plan bundle.yaml`: it lists every file and image kubespray would download.",
        "",
        "kubespray:",
        "  # The kubespray release whose own download definitions kubeplay evaluates.",
        f"  version: {version}",
        "  # URL of the release source archive, or a local .tar.gz or directory (relative to this file).",
        f"  source: {quoted(source)}",
        "  # sha256 of the archive; a different archive is refused.",
        f"  sha256: {sha256}" if sha256 else "  # sha256: <64 hex digits>",
        "",
        "# Kubernetes version; it must be in the release's checksum tables.",
    ]
    if supported_kube:
        lines.append(f"# {version} supports: {supported_kube}")
    lines += [f"kube_version: {quoted(kube)}" if kube else "# kube_version: (the release's default)", ""]
    lines += [
        "# CPU architectures of the cluster nodes: amd64, arm64.",
        f"arches: {flow(arches)}",
        "",
        "# kubespray's kube_network_plugin. A list bundles several; the plan is their union.",
    ]
    if choices:
        lines.append(f"# {version} accepts: {', '.join(choices.network_plugins)}")
    lines += [f"kube_network_plugin: {flow(plugins)}", "", "# kubespray's container_manager (a list bundles several)."]
    if choices:
        lines.append(f"# {version} accepts: {', '.join(choices.container_managers)}")
    lines += [
        f"container_manager: {flow(managers)}",
        "",
        "# Operating systems of the nodes; their OS packages go into the bundle.",
        "os:",
        "  - distro: debian",
        '    release: "12"',
        f"    arches: {flow(arches)}",
    ]
    if os_sources:
        lines.append(
            "    # From this build host's own apt sources (same distro); point them at another mirror if needed."
        )
        lines.append("    sources:")
        for url, suites in os_sources:
            lines += [f"      - url: {quoted(url)}", f"        suites: {flow(suites)}"]
    else:
        lines.append("    # sources: [{url: <Debian archive root>, suites: [bookworm, bookworm-updates]}]")
    lines += [
        "",
        "# The deploy node's OS, one of os: (default: any os: target that can be one). Its Python comes from the",
        "# bundle when the node has none; wheels/ then carry only that Python. Debian 11 cannot be the deploy node.",
        '# deploy_node: {distro: debian, release: "12"}',
        "",
        "# Where to fetch what kubespray would fetch from an upstream host: host -> base URL.",
        "mirrors: {}",
        "#  github.com: https://artifacts.example.internal/github",
        "#  registry.k8s.io: https://registry-mirror.example.internal",
        "",
        "# Credentials for mirrors and registries live in their own file (mode 0600), never here.",
        "# credentials_file: credentials.yaml",
        "",
        "# strict: an image without a requested arch fails the build; warn: bundle what exists and warn.",
        "platform_policy: strict",
        "",
        "# First path component of every image in the bundle's registry (fits one Harbor project).",
        "registry_project: library",
        "",
        "# More kubespray variables, as in your inventory's group_vars; those that change downloads matter here.",
        "kubespray_vars: {}",
        "#  etcd_deployment_type: kubeadm",
        "#  helm_enabled: true",
        "",
        "# What the cluster's own workloads need, in the same bundle and the same registry as kubespray's:",
        "# extra images (by tag or digest), cut to the bundle's arches (or the image's own `arches`), served as",
        "# <registry>/<registry_project>/<upstream host>/<repository>, e.g. kube.registry.local/library/quay.io/org/app:1.2.",
        "images: []",
        "#  - ghcr.io/example/app:1.2.0",
        "#  - {ref: quay.io/example/agent@sha256:<64 hex>, arches: [amd64], platform_policy: warn}",
        "",
        "# Extra files, served by the deploy node's nginx at files/<host>/<path> like kubespray's; sha256 required.",
        "files: []",
        "#  - {url: https://example.com/tools/tool-1.0.tar.gz, sha256: <64 hex>}",
        "",
        "# Helm charts (classic repo with index.yaml, or oci://), exact versions; served from the bundle registry",
        "# (oci://<registry>/<registry_project>/charts/<name>) and as a chart repo at files/charts/. The images",
        "# they use are found in values.yaml and bundled; `images:` adds what is missed, `exclude_images:` drops.",
        "charts: []",
        "#  - {name: podinfo, repo: oci://ghcr.io/stefanprodan/charts, version: 6.7.1}",
        "#  - {name: ingress-nginx, repo: https://kubernetes.github.io/ingress-nginx, version: 4.11.3, exclude_images: [busybox]}",
        "",
        "# For a deploy node whose OS repos have no distribution registry package (EL has none): bundle the",
        "# registry's release archive per arch; install puts its binary on the deploy node. Digests from the release.",
        "# registry_binary:",
        "#   url: https://github.com/distribution/distribution/releases/download/v3.0.0/registry_3.0.0_linux_{arch}.tar.gz",
        "#   sha256: {amd64: <64 hex>, arm64: <64 hex>}",
        "",
    ]
    return "\n".join(lines)
