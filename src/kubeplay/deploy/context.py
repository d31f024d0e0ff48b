"""What every deploy step reads: config.yaml, the bundle, the inventory, kubeplay's group vars, the workspace.

Everything here is computed before any host is touched, so bad input (an invalid inventory, a
kube_version the bundle does not carry, a missing CA) stops the command with nothing changed.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeplay.bootstrap.bundleinfo import BundleFacts, read_bundle
from kubeplay.bootstrap.hostinfo import address_prefixlen, detect_primary_address
from kubeplay.bootstrap.osrepo import apt_suites, find_key, key_is_armored
from kubeplay.bootstrap.paths import HostPaths
from kubeplay.config.install import EffectiveConfig, InstallConfig, load_install_config, resolve
from kubeplay.console import Output
from kubeplay.deploy.inventory import SECRET_VARS, ClusterInventory, cluster_inventory
from kubeplay.deploy.offline_vars import CA_ON_NODE, DeployEndpoint, offline_vars
from kubeplay.deploy.runner import Workspace
from kubeplay.deploy.versions import check_ansible, installed_ansible_core
from kubeplay.errors import BadInput, BundleError
from kubeplay.state import input_hash

DEFAULT_STATE = Path("/var/lib/kubeplay/deploy")
NODE_GROUPS = "kube_control_plane:kube_node:etcd:calico_rr"


@dataclass
class DeployContext:
    config_path: Path
    cfg: EffectiveConfig
    bundle: BundleFacts
    kubespray_dir: Path
    inventory: ClusterInventory
    group_vars: dict[str, Any]
    ws: Workspace
    ca_path: Path
    out: Output

    @property
    def inputs_digest(self) -> str:
        """A hash of everything the cluster is built from (secrets excluded: a new password reruns nothing)."""
        return input_hash(
            {
                "inventory": self.inventory.to_ansible(exclude_vars=SECRET_VARS),
                "vars": self.group_vars,
                "kube_version": self.bundle.kube_version,
                "kubespray": str(self.kubespray_dir),
            }
        )


def load_config(path: Path) -> tuple[InstallConfig, ClusterInventory]:
    """config.yaml read once into the install model; its inventory then checked for kubespray (every
    problem listed). Raise ConfigError naming the file and each field path."""
    cfg = load_install_config(path, for_deploy=True)
    return cfg, cluster_inventory(cfg, path)


def effective_config(cfg: InstallConfig, path: Path) -> EffectiveConfig:
    detected = detect_primary_address() if cfg.compose.internal_ip is None else None
    ip = cfg.compose.internal_ip or (detected.ip if detected else None)
    prefix = detected.prefixlen if detected else (address_prefixlen(ip) if ip else None)
    return resolve(cfg, path, detected.ip if detected else None, prefix)


def bundle_repos(bundle: BundleFacts) -> list[dict[str, Any]]:
    """The bundle's OS repos as node prep needs them: where on the deploy node's HTTP server, and the key."""
    repos: list[dict[str, Any]] = []
    for repo in bundle.repos:
        key_bytes = find_key(repo, bundle.root).read_bytes()
        entry: dict[str, Any] = {
            "family": repo.family,
            "distro": repo.distro,
            "release": repo.release,
            "path": repo.path.relative_to(bundle.root).as_posix(),
            # The key travels in the module arguments of node prep's one file-writing task (binary-safe).
            "key_b64": base64.b64encode(key_bytes).decode("ascii"),
            "key_name": "kubeplay-archive-keyring" + (".asc" if key_is_armored(key_bytes) else ".gpg"),
        }
        if repo.family == "apt":
            suites = apt_suites(repo.path)
            entry["suites"] = [s for s, _ in suites] or ["./"]
            entry["components"] = sorted({c for _, cs in suites for c in cs})
        repos.append(entry)
    return repos


def image_repositories(bundle: BundleFacts) -> list[tuple[str, str]]:
    return [
        (str(i.get("upstream", "")), str(i.get("repository", "")))
        for i in bundle.manifest.get("images", [])
        if isinstance(i, dict)
    ]


def nodeprep_vars(ctx_cfg: EffectiveConfig, bundle: BundleFacts, endpoint: DeployEndpoint, ca: Path) -> dict[str, Any]:
    return {
        "kubeplay_repo_base": endpoint.repos_url.removesuffix("/repos"),
        "kubeplay_repos": bundle_repos(bundle),
        "kubeplay_ca_b64": base64.b64encode(ca.read_bytes()).decode("ascii"),
        # Where containerd's hosts.toml (offline_vars) expects the CA: one path for both.
        "kubeplay_ca_on_node": CA_ON_NODE,
        "kubeplay_registry_ip": ctx_cfg.registry_ip,
        "kubeplay_registry_domain": ctx_cfg.registry_domain,
        "kubeplay_ntp_servers": list(ctx_cfg.ntp_servers),
        "kubeplay_firewall": "disable",
    }


def build_context(
    config_path: Path,
    bundle_source: BundleFacts | Path,
    *,
    state_dir: Path | None = None,
    out: Output,
    ca_path: Path | None = None,
    exec_prefix: tuple[str, ...] = (),
) -> DeployContext:
    """Load and check everything; raise ConfigError/BadInput/BundleError before any host is touched.

    `bundle_source` is an unpacked bundle directory or a bundle already read (a served version's facts)."""
    cfg, inventory = load_config(config_path)
    eff = effective_config(cfg, config_path)
    bundle = bundle_source if isinstance(bundle_source, BundleFacts) else read_bundle(bundle_source)
    kubespray_dir = bundle.kubespray_dir
    if not (kubespray_dir / "playbooks" / "cluster.yml").is_file():
        raise BundleError(f"{kubespray_dir}: kubespray tree missing from the bundle", hint="run `kubeplay verify`")
    check_ansible(bundle, installed_ansible_core())
    ca = ca_path or HostPaths().ca_cert
    if not ca.is_file():
        raise BadInput(f"{ca}: the registry CA is missing", hint="run `kubeplay install` on this deploy node first")
    endpoint = DeployEndpoint(
        internal_ip=eff.internal_ip,
        nginx_http_port=eff.nginx_http_port,
        registry_domain=eff.registry_domain,
        registry_https_port=eff.registry_https_port,
        image_project=eff.image_repository,
    )
    group_vars = offline_vars(
        endpoint,
        bundle.kube_version,
        catalog_vars=dict(bundle.manifest.get("offline_vars") or {}),
        image_repositories=image_repositories(bundle),
        config_vars=cfg.kubespray.model_dump(mode="json", exclude_none=True, exclude_unset=True),
        config_defaults=cfg.default.model_dump(mode="json", exclude_unset=True),
    )
    group_vars.update(nodeprep_vars(eff, bundle, endpoint, ca))
    ws = Workspace(state_dir or DEFAULT_STATE, exec_prefix)
    return DeployContext(
        config_path=config_path,
        cfg=eff,
        bundle=bundle,
        kubespray_dir=kubespray_dir.resolve(),
        inventory=inventory,
        group_vars=group_vars,
        ws=ws,
        ca_path=ca,
        out=out,
    )
