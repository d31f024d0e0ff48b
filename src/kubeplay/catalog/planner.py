"""make_plan: everything kubespray would download for a bundle.yaml, per arch and configuration.

Variables are layered as Ansible does for kubespray (lowest first): role defaults < user variables
(bundle.yaml `kubespray_vars`, `kube_version`, `kube_network_plugin`, `container_manager`, i.e. inventory
group_vars) < facts < role vars < extra vars.

Roles loaded: those contrib/offline/generate_list.yml loads, kubespray_defaults (or kubespray-defaults) and
download. cluster.yml's download play also has kubernetes/preinstall (+ adduser) and container-engine in
scope (container-engine's runtimes come in through private include_role); for v2.24-v2.31 none of them
defines a variable the download entries read — all of those live in kubespray_defaults, the rest are facts
or guarded by `default`/`is defined` — so both role sets give the same downloads. Facts are the minimal
per-arch set in `facts_for` (no gathering).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

from kubeplay.catalog.choices import Choices, supported_choices
from kubeplay.catalog.collect import PlanBuilder
from kubeplay.catalog.dependencies import ARCH_FACTS, DependencyGraph
from kubeplay.catalog.entries import EntryRenderer, RenderedEntries, RenderedImage
from kubeplay.catalog.extras import image_pairs, other_role_defaults, render_extra_images, role_images
from kubeplay.catalog.gates import RoleGates, gated_images, role_inclusions
from kubeplay.catalog.model import Plan, RenderProblem
from kubeplay.catalog.offline import derive_offline_vars
from kubeplay.catalog.rolevars import RoleVariables, load_role_variables
from kubeplay.catalog.source import KubesprayTree
from kubeplay.catalog.templating import SharedValues, TemplateEngine, TemplateFailure, VariableScope
from kubeplay.config.bundle import SUPPORTED_ARCHES, BundleSpec
from kubeplay.errors import CatalogError, ConfigError

MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}
KUBEADM_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
MANAGED_KEYS = ("kube_version", "kube_network_plugin", "container_manager")
ARTIFACT_FIELDS = ("url", "checksum", "sha256", "repo", "tag", "version", "groups", "container", "file")
# Settings that change what an entry downloads (not just whether): --all renders every value of each.
ALL_VARIANTS: dict[str, tuple[Any, ...]] = {
    "containerd_static_binary": (False, True),
    "kube_vip_lb_fwdmethod": ("local", "masquerade"),
    "gateway_api_channel": ("standard", "experimental"),
}

ENGINE = TemplateEngine()


def facts_for(arch: str) -> dict[str, Any]:
    """The few facts kubespray's download definitions read (gather_facts is not needed)."""
    return {
        "ansible_architecture": MACHINE[arch],
        "ansible_machine": MACHINE[arch],
        "ansible_system": "Linux",
        "ansible_os_family": "Debian",
    }


def check_arches(arches: Sequence[str]) -> list[str]:
    unknown = [a for a in arches if a not in SUPPORTED_ARCHES]
    if unknown or not arches:
        raise CatalogError(
            f"unknown arch {', '.join(map(repr, unknown)) or '(none given)'}; supported: {', '.join(SUPPORTED_ARCHES)}"
        )
    return list(dict.fromkeys(arches))


def check_choices(spec: BundleSpec, choices: Choices, label: str) -> None:
    for field, values, valid in (
        ("kube_network_plugin", spec.kube_network_plugin, choices.network_plugins),
        ("container_manager", spec.container_manager, choices.container_managers),
    ):
        for value in values:
            if value not in valid:
                raise CatalogError(f"{field}: unknown value {value!r}; {label} supports: {', '.join(valid)}")
    etcd = spec.kubespray_vars.get("etcd_deployment_type")
    if etcd is not None and etcd not in choices.etcd_deployment_types:
        raise CatalogError(
            f"kubespray_vars.etcd_deployment_type: unknown value {etcd!r}; "
            f"{label} supports: {', '.join(choices.etcd_deployment_types)}"
        )


def user_variables(spec: BundleSpec) -> dict[str, Any]:
    for key in MANAGED_KEYS:
        if key in spec.kubespray_vars:
            raise ConfigError(f"kubespray_vars.{key}: set `{key}` at the top level of bundle.yaml instead")
    return dict(spec.kubespray_vars)


def release_default(variables: RoleVariables, name: str) -> Any:
    scope = VariableScope(ENGINE, [variables.defaults, facts_for("amd64"), variables.vars])
    return scope[name] if name in scope.raw else None


def resolve_kube_version(spec: BundleSpec, variables: RoleVariables) -> str:
    """bundle.yaml's kube_version in the release's own spelling (older releases prefix "v")."""
    default = release_default(variables, "kube_version")
    default_text = str(default) if isinstance(default, str | int | float) else ""
    if spec.kube_version is None:
        if not default_text:
            raise CatalogError(
                "cannot render the release's default kube_version", hint="set kube_version in bundle.yaml"
            )
        return default_text
    return f"v{spec.kube_version}" if default_text.startswith("v") else spec.kube_version


def check_kube_version(scope: VariableScope, kube_version: str, arch: str, label: str) -> None:
    """Raise CatalogError listing the supported versions when kube_version has no checksums for `arch`."""
    table = scope["kubelet_checksums"] if "kubelet_checksums" in scope.raw else None
    if not isinstance(table, Mapping):
        return
    per_arch = table.get(arch)
    if not isinstance(per_arch, Mapping):
        raise CatalogError(f"{label} has no kubelet checksums for {arch}; it has: {', '.join(map(str, table))}")
    if kube_version not in per_arch:
        supported = ", ".join(str(v).removeprefix("v") for v in per_arch)
        raise CatalogError(
            f"kube_version {kube_version.removeprefix('v')} is not in {label}'s checksum tables ({arch}); "
            f"supported: {supported}",
            hint="set kube_version in bundle.yaml to one of these, or use a kubespray release that has it",
        )


def kubeadm_images(scope: VariableScope, kube_version: str, all_entries: bool, out: RenderedEntries) -> None:
    """The images `kubeadm config images list` adds (minus coredns and pause, which kubespray filters out)."""
    repo_var = "kubeadm_image_repo" if "kubeadm_image_repo" in scope.raw else "kube_image_repo"
    tag = "v" + kube_version.removeprefix("v")
    wanted = [(f"kubeadm_{n}", f"{{{{ {repo_var} }}}}/{n}", tag, repo_var) for n in KUBEADM_IMAGES]
    try:
        kubeadm_etcd = all_entries or scope.template("{{ etcd_deployment_type | default('host') }}") == "kubeadm"
        if kubeadm_etcd:
            etcd_repo = "{{ etcd_image_repo | regex_replace('/etcd$', '') }}/etcd"
            wanted.append(("kubeadm_etcd", etcd_repo, str(scope.template("{{ etcd_image_tag }}")), "etcd_image_repo"))
    except (TemplateFailure, Exception) as exc:  # noqa: BLE001 - reported, the rest of the plan still renders
        out.problems.append(RenderProblem(entry="kubeadm_etcd", variable="etcd_image_tag", message=str(exc)))
    for name, repo_template, image_tag, variable in wanted:
        try:
            repo = str(scope.template(repo_template))
        except Exception as exc:  # noqa: BLE001 - reported, the rest of the plan still renders
            out.problems.append(RenderProblem(entry=name, variable=variable, message=str(exc)))
            continue
        out.images.append(RenderedImage(name, repo, image_tag, None, ("k8s_cluster",), variable))


def render_downloads(
    scope: VariableScope, downloads: Mapping[str, Any], names: Iterable[str], all_entries: bool, label: str
) -> RenderedEntries:
    out = RenderedEntries()
    renderer = EntryRenderer(scope, label)
    for name in names:
        entry = downloads[name]
        if isinstance(entry, Mapping):
            renderer.render(name, entry, all_entries, out)
    return out


def make_plan(
    spec: BundleSpec,
    tree: KubesprayTree,
    *,
    arches: list[str] | None = None,
    all_entries: bool = False,
    extra_vars: Mapping[str, Any] | None = None,
) -> Plan:
    """Render every download of `tree` for `spec` (the union over its network plugins and container managers).

    `arches` narrows spec.arches; `all_entries` ignores `enabled` and adds every network plugin, container
    manager and download variant. Raise CatalogError/ConfigError for bad input; templates that cannot render
    are returned as Plan.problems while the rest of the plan renders.

    Phases: check the spec against the release and load its variables (`PlanInputs.load`), find the images
    roles use outside `downloads:` (`_Rendering`), render every arch x plugin x manager (`render_arch`),
    then collect files, images and the offline variables (`plan`).
    """
    rendering = _Rendering(spec, tree, PlanInputs.load(spec, tree, arches, extra_vars), all_entries)
    for arch in rendering.inputs.arches:
        rendering.render_arch(arch)
    return rendering.plan()


@dataclass(frozen=True)
class PlanInputs:
    """What a plan is rendered from: the checked spec values and the release's variables and `downloads:`."""

    label: str
    arches: list[str]
    choices: Choices
    user_vars: dict[str, Any]
    variables: RoleVariables
    kube_version: str
    extra: dict[str, Any]
    raw: dict[str, Any]  # every layer merged, unrendered: what the dependency graph reads
    downloads: Mapping[str, Any]
    graph: DependencyGraph

    @classmethod
    def load(
        cls, spec: BundleSpec, tree: KubesprayTree, arches: list[str] | None, extra_vars: Mapping[str, Any] | None
    ) -> PlanInputs:
        """Check arches, choices and kube_version against the release; raise CatalogError/ConfigError."""
        label = tree.label
        arch_list = check_arches(arches or spec.arches)
        choices = supported_choices(tree)
        check_choices(spec, choices, label)
        user_vars = user_variables(spec)
        variables = load_role_variables(tree)
        kube_version = resolve_kube_version(spec, variables)
        extra = dict(extra_vars or {})
        raw = {**variables.defaults, **user_vars, **variables.vars, **extra}
        downloads = raw.get("downloads")
        if not isinstance(downloads, Mapping):
            raise CatalogError(f"{label}: no `downloads:` mapping in roles/{tree.layout}/defaults")
        graph = DependencyGraph(ENGINE, raw)
        return cls(label, arch_list, choices, user_vars, variables, kube_version, extra, raw, downloads, graph)

    def entries(self) -> dict[str, Mapping[str, Any]]:
        return {name: entry for name, entry in self.downloads.items() if isinstance(entry, Mapping)}


class _Rendering:
    """One make_plan run: the scopes each arch and configuration renders in, and the builder they add to."""

    def __init__(self, spec: BundleSpec, tree: KubesprayTree, inputs: PlanInputs, all_entries: bool) -> None:
        self.spec = spec
        self.tree_version = tree.version
        self.inputs = inputs
        self.all_entries = all_entries
        graph, raw, entries = inputs.graph, inputs.raw, inputs.entries()
        noarch = {
            name
            for name, entry in entries.items()
            if not (graph.closure_of_value([entry.get(f) for f in ("url", "checksum", "sha256")]) & ARCH_FACTS)
        }
        self.builder = PlanBuilder(spec.registry_project, noarch)
        self.variants = all_variants(inputs.choices, raw) if all_entries else []
        volatile = {*facts_for("amd64"), "kube_network_plugin", "container_manager", *(v for v, _ in self.variants)}
        self.shared = SharedValues(graph.closure, raw, volatile)
        self.entry_reads = {
            name: graph.closure_of_value([e.get(f) for f in ARTIFACT_FIELDS]) for name, e in entries.items()
        }
        # Images enabled roles use outside `downloads:` (gates.py); --all takes every pattern instead.
        download_repos = set().union(*(graph.closure_of_value(e.get("repo")) for e in entries.values()))
        self.outside = [] if all_entries else [i for i in role_images(tree) if i.repo_variable not in download_repos]
        self.inclusions = role_inclusions(tree) if self.outside else {}
        self.extras_layer: dict[str, Any] = other_role_defaults(tree) if all_entries or self.outside else {}
        self.pairs = image_pairs(tree, {**self.extras_layer, **raw}) if all_entries else []
        self.gated_vars: set[str] = set()
        self.combos = list(product(spec.kube_network_plugin, spec.container_manager))

    def _layers(self, arch: str, plugin: str, manager: str) -> list[Mapping[str, Any]]:
        i = self.inputs
        user = {
            **i.user_vars,
            "kube_version": i.kube_version,
            "kube_network_plugin": plugin,
            "container_manager": manager,
        }
        return [i.variables.defaults, user, facts_for(arch), i.variables.vars, i.extra]

    def scope(self, arch: str, plugin: str, manager: str, more: Mapping[str, Any]) -> VariableScope:
        return VariableScope(ENGINE, [*self._layers(arch, plugin, manager), more], self.shared)

    def wider_scope(self, arch: str, plugin: str, manager: str) -> VariableScope:
        """Every role's defaults under the download role's variables; not shared (its raw values differ)."""
        return VariableScope(ENGINE, [self.extras_layer, *self._layers(arch, plugin, manager)])

    def render_arch(self, arch: str) -> None:
        """Every configuration (plugin x manager) of `arch`, and with --all every variant and role image."""
        i, downloads = self.inputs, self.inputs.downloads
        for index, (plugin, manager) in enumerate(self.combos):
            scope = self.scope(arch, plugin, manager, {})
            if index == 0:
                check_kube_version(scope, i.kube_version, arch, i.label)
            rendered = render_downloads(scope, downloads, downloads, self.all_entries, arch)
            kubeadm_images(scope, i.kube_version, self.all_entries, rendered)
            self.builder.add(rendered, arch)
            if self.outside:
                wider = self.wider_scope(arch, plugin, manager)
                gated = gated_images(self.outside, RoleGates(self.inclusions, wider), wider)
                self.gated_vars.update(image.variable for image in gated.images)
                self.builder.add(gated, arch)
        if self.all_entries:
            plugin, manager = self.combos[0]
            for variable, value in self.variants:
                affected = [name for name, reads in self.entry_reads.items() if variable in reads]
                if affected:
                    scope = self.scope(arch, plugin, manager, {variable: value})
                    label = f"{arch} {variable}={value}"
                    self.builder.add(render_downloads(scope, downloads, affected, True, label), arch)
            self.builder.add(render_extra_images(self.wider_scope(arch, plugin, manager), self.pairs), arch)

    def plan(self) -> Plan:
        """The plan: files, images, the offline variables for everything it lists, and render problems."""
        i, extras, project = self.inputs, self.extras_layer, self.spec.registry_project
        gated_defaults = {v: extras[v] for v in sorted(self.gated_vars) if v in extras}
        return Plan(
            kubespray_version=self.tree_version or "unknown",
            kube_version=i.kube_version,
            arches=tuple(i.arches),
            files=tuple(self.builder.files.values()),
            images=tuple(self.builder.image_artifacts()),
            offline_vars={
                **derive_offline_vars({**extras, **i.raw} if self.all_entries else i.raw, i.graph, project),
                **derive_offline_vars(gated_defaults, i.graph, project),
            },
            problems=tuple(self.builder.problems),
        )


def all_variants(choices: Choices, raw: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(variable, value) pairs --all renders on top of the base configuration."""
    variants: dict[str, tuple[Any, ...]] = {
        "kube_network_plugin": choices.network_plugins,
        "container_manager": choices.container_managers,
        "etcd_deployment_type": choices.etcd_deployment_types,
        **ALL_VARIANTS,
    }
    return [(name, value) for name, values in variants.items() if name in raw for value in values]
