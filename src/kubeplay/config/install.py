"""config.yaml: the install side, key-compatible with the original kubeplay's config-sample.yaml.

Sections: `compose` (the deploy node's own services), `kubespray` (kubespray variables, passed through),
`inventory` (an Ansible YAML inventory, or an INI inventory as a string) and `default` (derived values; `internal_ip` placeholders).
`resolve()` turns the placeholders into an EffectiveConfig; the user's file is never written.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kubeplay.config.loader import load_model
from kubeplay.errors import ConfigError

PLACEHOLDER_IP = "internal_ip"
PLACEHOLDER_URL = "internal_ip:nginx_http_port"
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
# Validation context key set by deploy: deploy.inventory checks the hosts groups name, among every other
# problem it lists at once, so the model leaves that one check to it.
DEPLOY_CHECKS_HOSTS = "deploy_checks_hosts"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


def _port(v: int) -> int:
    if not 1 <= v <= 65535:
        raise ValueError(f"expected a TCP port between 1 and 65535, got {v}")
    return v


def _ip(v: str) -> str:
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise ValueError(f"expected an IP address, got {v!r}") from None


class Compose(Strict):
    """The deploy node's services. An empty or missing internal_ip is detected from the routing table."""

    internal_ip: str | None = None
    nginx_http_port: int = 8080
    registry_domain: str = "kube.registry.local"
    # install.sh reads it before any Python runs: an OpenSSH allowed_signers file; the bundle must be signed by one.
    allowed_signers: str | None = None

    @field_validator("internal_ip", mode="before")
    @classmethod
    def _blank_is_missing(cls, v: Any) -> Any:
        return None if v is None or (isinstance(v, str) and not v.strip()) else v

    @field_validator("internal_ip")
    @classmethod
    def _check_ip(cls, v: str | None) -> str | None:
        return None if v is None else _ip(v)

    @field_validator("nginx_http_port")
    @classmethod
    def _check_port(cls, v: int) -> int:
        return _port(v)

    @field_validator("registry_domain")
    @classmethod
    def _check_domain(cls, v: str) -> str:
        v = v.strip().lower().rstrip(".")
        if not _DOMAIN.match(v):
            raise ValueError(f"expected a DNS name with at least one dot (e.g. kube.registry.local), got {v!r}")
        return v


class KubesprayVars(BaseModel):
    """kubespray variables. The common ones are typed; any other kubespray variable passes through unchanged."""

    model_config = ConfigDict(extra="allow", hide_input_in_errors=True)

    kube_version: str | None = None
    external_apiserver_access_ip: str | None = None
    kube_network_plugin: str = "calico"
    container_manager: str = "containerd"
    etcd_deployment_type: str = "host"
    etcd_events_cluster_setup: bool = False
    etcd_events_cluster_enabled: bool = False

    @field_validator("kube_version", mode="before")
    @classmethod
    def _version_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) else v

    @model_validator(mode="after")
    def _variable_names(self) -> KubesprayVars:
        for key in self.model_extra or {}:
            if not _VARIABLE.match(key):
                raise ValueError(f"{key!r} is not a valid Ansible variable name")
        return self


class HostVars(BaseModel):
    """One inventory host. ansible_host is checked; other Ansible host variables pass through."""

    model_config = ConfigDict(extra="allow", hide_input_in_errors=True)

    ansible_host: str | None = None
    ansible_port: int | None = None
    ansible_user: str | None = None
    ip: str | None = None
    access_ip: str | None = None

    @field_validator("ansible_host")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            if not _HOSTNAME.match(v):
                raise ValueError(f"expected an IP address or host name, got {v!r}") from None
            return v

    @field_validator("ip", "access_ip")
    @classmethod
    def _addr(cls, v: str | None) -> str | None:
        return None if v is None else _ip(v)

    @field_validator("ansible_port")
    @classmethod
    def _p(cls, v: int | None) -> int | None:
        return None if v is None else _port(v)


class Group(Strict):
    """An Ansible inventory group: vars, hosts (name -> vars or empty) and child groups."""

    vars: dict[str, Any] = Field(default_factory=dict)
    hosts: dict[str, HostVars | None] = Field(default_factory=dict)
    children: dict[str, Group | None] = Field(default_factory=dict)

    @field_validator("vars", "hosts", "children", mode="before")
    @classmethod
    def _null_is_empty(cls, v: Any) -> Any:
        return {} if v is None else v


class Inventory(Strict):
    all: Group = Field(default_factory=Group)

    def host_addresses(self) -> dict[str, str]:
        """Every host defined under all.hosts with the address Ansible would use for it."""
        out: dict[str, str] = {}
        for name, hv in self.all.hosts.items():
            out[name] = (hv.ansible_host if hv and hv.ansible_host else None) or name
        return out

    @model_validator(mode="after")
    def _children_hosts_defined(self, info: ValidationInfo) -> Inventory:
        if info.context and info.context.get(DEPLOY_CHECKS_HOSTS):
            return self
        defined = set(self.all.hosts)
        problems: list[str] = []

        def walk(group: Group, path: str) -> None:
            for host, hv in group.hosts.items():
                if path != "all" and host not in defined and not (hv and hv.ansible_host):
                    problems.append(f"{path}.hosts.{host} is not defined under all.hosts")
            for name, child in group.children.items():
                if child is not None:
                    walk(child, f"{path}.children.{name}")

        walk(self.all, "all")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _inventory_form(v: Any) -> str:
    return "<ini>" if isinstance(v, str) else "<yaml>"


# YAML mapping -> Inventory; a string is an INI inventory (parsed and checked by kubeplay.deploy.inventory).
# The tags are dropped from error paths by config.loader.field_path.
InventoryField = Annotated[
    Annotated[Inventory, Tag("<yaml>")] | Annotated[str, Tag("<ini>")], Discriminator(_inventory_form)
]
_INI_HOST = re.compile(r"(?:^|\s)ansible_host=['\"]?([^\s'\"]+)", re.MULTILINE)


class Defaults(Strict):
    """The original's `default:` section. 'internal_ip' placeholders are resolved at install time."""

    ntp_server: list[str] = Field(default_factory=lambda: [PLACEHOLDER_IP])
    registry_ip: str = PLACEHOLDER_IP
    offline_resources_url: str = PLACEHOLDER_URL
    offline_resources_enabled: bool = True
    image_repository: str = "library"
    kubespray_image: str = "kubespray"
    generate_domain_crt: bool = True
    registry_https_port: int = 443
    registry_push_port: int = 5000
    download_container: bool = False
    cilium_enable_hubble: bool = False
    cilium_hubble_install: bool = False
    cilium_hubble_tls_generate: bool = False
    cilium_kube_proxy_replacement: str = "probe"

    @field_validator("ntp_server", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("registry_ip")
    @classmethod
    def _reg_ip(cls, v: str) -> str:
        return v if v == PLACEHOLDER_IP else _ip(v)

    @field_validator("registry_https_port", "registry_push_port")
    @classmethod
    def _ports(cls, v: int) -> int:
        return _port(v)

    @field_validator("image_repository")
    @classmethod
    def _repo(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*", v):
            raise ValueError(f"expected a registry path like 'library', got {v!r}")
        return v


class InstallConfig(Strict):
    """The whole of config.yaml."""

    compose: Compose = Field(default_factory=Compose)
    kubespray: KubesprayVars = Field(default_factory=KubesprayVars)
    inventory: InventoryField = Field(default_factory=Inventory)
    default: Defaults = Field(default_factory=Defaults)

    @field_validator("compose", "kubespray", "inventory", "default", mode="before")
    @classmethod
    def _null_section(cls, v: Any) -> Any:
        return {} if v is None else v

    def inventory_addresses(self) -> list[str]:
        """The address Ansible would use for each inventory host (a host name where no ansible_host is set)."""
        if isinstance(self.inventory, str):
            return _INI_HOST.findall(self.inventory)
        return list(self.inventory.host_addresses().values())

    @model_validator(mode="after")
    def _distinct_ports(self) -> InstallConfig:
        ports = {
            "compose.nginx_http_port": self.compose.nginx_http_port,
            "default.registry_https_port": self.default.registry_https_port,
            "default.registry_push_port": self.default.registry_push_port,
        }
        seen: dict[int, str] = {}
        for name, port in ports.items():
            if port in seen:
                raise ValueError(f"{name} and {seen[port]} are both {port}; each service needs its own port")
            seen[port] = name
        return self


class EffectiveConfig(Strict):
    """config.yaml with every placeholder resolved: what install actually used (written to the state dir)."""

    source: str
    internal_ip: str
    internal_ip_detected: bool
    registry_domain: str
    registry_ip: str
    nginx_http_port: int
    registry_https_port: int
    registry_push_port: int
    generate_domain_crt: bool
    image_repository: str
    ntp_servers: list[str]
    ntp_allow: list[str]
    offline_resources_url: str
    config: dict[str, Any]

    @property
    def registry_url(self) -> str:
        port = "" if self.registry_https_port == 443 else f":{self.registry_https_port}"
        return f"{self.registry_domain}{port}"


def load_install_config(path: Path, *, for_deploy: bool = False) -> InstallConfig:
    """Read and validate config.yaml; raise ConfigError naming the file and each bad field path.

    `for_deploy`: the inventory's groups may name hosts all.hosts lacks; deploy.inventory.cluster_inventory
    reports them with the rest of what kubespray needs.
    """
    return load_model(path, InstallConfig, {DEPLOY_CHECKS_HOSTS: True} if for_deploy else None)


def cluster_subnets(internal_ip: str, prefixlen: int | None, hosts: list[str]) -> list[str]:
    """Networks chrony should serve: the deploy node's own subnet plus any inventory address outside it."""
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    ip = ipaddress.ip_address(internal_ip)
    if prefixlen is not None:
        nets.append(ipaddress.ip_network(f"{ip}/{prefixlen}", strict=False))
    for h in hosts:
        try:
            addr = ipaddress.ip_address(h)
        except ValueError:
            continue
        if not any(addr in n for n in nets if n.version == addr.version):
            nets.append(ipaddress.ip_network(addr))
    if not nets:
        nets.append(ipaddress.ip_network(ip))
    return [str(n) for n in nets]


def resolve(cfg: InstallConfig, source: Path, detected_ip: str | None, prefixlen: int | None = None) -> EffectiveConfig:
    """Replace `internal_ip` placeholders; raise ConfigError when no address is set and none was detected."""
    ip = cfg.compose.internal_ip or detected_ip
    if ip is None:
        raise ConfigError(
            f"{source}: compose.internal_ip is empty and no primary address could be detected",
            hint="set compose.internal_ip to the deploy node's address on the cluster network",
        )
    d = cfg.default
    registry_ip = ip if d.registry_ip == PLACEHOLDER_IP else d.registry_ip
    ntp = [ip if s == PLACEHOLDER_IP else s for s in d.ntp_server]
    url = d.offline_resources_url
    host_ip = f"[{ip}]" if ":" in ip else ip
    if url == PLACEHOLDER_URL:
        url = f"http://{host_ip}:{cfg.compose.nginx_http_port}"
    elif "://" not in url:
        url = f"http://{url}"
    resolved = cfg.model_dump(mode="json")
    resolved["compose"]["internal_ip"] = ip
    resolved["default"].update(registry_ip=registry_ip, ntp_server=ntp, offline_resources_url=url)
    return EffectiveConfig(
        source=str(source),
        internal_ip=ip,
        internal_ip_detected=cfg.compose.internal_ip is None,
        registry_domain=cfg.compose.registry_domain,
        registry_ip=registry_ip,
        nginx_http_port=cfg.compose.nginx_http_port,
        registry_https_port=d.registry_https_port,
        registry_push_port=d.registry_push_port,
        generate_domain_crt=d.generate_domain_crt,
        image_repository=d.image_repository,
        ntp_servers=ntp,
        ntp_allow=cluster_subnets(ip, prefixlen, cfg.inventory_addresses()),
        offline_resources_url=url,
        config=resolved,
    )
