"""The cluster inventory from config.yaml's `inventory` section: parsed, validated, and split from its secrets.

Accepts an Ansible YAML inventory (a mapping, as in kubeplay's config-sample.yaml) or an Ansible INI
inventory given as a string. kubespray's group names are kept exactly as written. Validation runs before
any host is touched and names the field path of every problem.
"""

from __future__ import annotations

import ast
import ipaddress
import os
import re
import shlex
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeplay.config.install import InstallConfig
from kubeplay.errors import ConfigError

REQUIRED_GROUPS = ("kube_control_plane", "kube_node", "etcd")
# Names kubespray's dynamic_groups role still maps; kubeplay keeps kubespray's current names and says so.
LEGACY_GROUPS = {"kube-master": "kube_control_plane", "kube_master": "kube_control_plane", "kube-node": "kube_node"}
SECRET_VARS = frozenset(
    {
        "ansible_ssh_pass",
        "ansible_password",
        "ansible_become_pass",
        "ansible_become_password",
        "ansible_sudo_pass",
        "ansible_ssh_private_key_passphrase",
    }
)
KEY_VARS = ("ansible_ssh_private_key_file", "ansible_private_key_file")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_RANGE = re.compile(r"^(.*)\[([0-9a-z]+):([0-9a-z]+)(?::(\d+))?\](.*)$")


@dataclass
class GroupEntry:
    """One group: its direct hosts, child groups, vars, and where it was defined (a field path)."""

    name: str
    path: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClusterInventory:
    """Hosts (merged host vars) and groups, with the field path each host was first defined at."""

    source: str  # "yaml" or "ini"
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    host_paths: dict[str, str] = field(default_factory=dict)
    groups: dict[str, GroupEntry] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    var_paths: dict[tuple[str, str], str] = field(default_factory=dict)

    def where(self, host: str, var: str) -> str:
        """The field path where `var` of `host` was set (or would be set)."""
        return self.var_paths.get((host, var), f"{self.host_paths[host]}.{var}")

    def members(self, group: str) -> list[str]:
        """Every host in `group`, through its children, in definition order ("all" is every host)."""
        if group == "all":
            return list(self.hosts)
        seen: list[str] = []
        stack = [group]
        visited: set[str] = set()
        while stack:
            name = stack.pop(0)
            if name in visited or name not in self.groups:
                continue
            visited.add(name)
            entry = self.groups[name]
            seen.extend(h for h in entry.hosts if h not in seen)
            stack.extend(entry.children)
        return seen

    def host_vars(self, host: str) -> dict[str, Any]:
        """Host vars with group vars underneath (all < groups < host), as Ansible would resolve them."""
        merged: dict[str, Any] = dict(self.groups["all"].vars) if "all" in self.groups else {}
        for name, entry in self.groups.items():
            if name != "all" and host in self.members(name):
                merged.update(entry.vars)
        merged.update(self.hosts.get(host, {}))
        return merged

    def address(self, host: str) -> str:
        return str(self.host_vars(host).get("ansible_host") or host)

    def to_ansible(self, exclude_vars: frozenset[str] = frozenset()) -> dict[str, Any]:
        """A YAML inventory for Ansible: all.hosts holds host vars, groups sit under all.children."""

        def clean(v: dict[str, Any]) -> dict[str, Any]:
            return {k: val for k, val in v.items() if k not in exclude_vars}

        all_entry = self.groups.get("all", GroupEntry("all", "inventory.all"))
        children: dict[str, Any] = {}
        for name, entry in self.groups.items():
            if name in ("all", "ungrouped"):
                continue
            body: dict[str, Any] = {}
            if entry.hosts:
                body["hosts"] = {h: None for h in entry.hosts}
            if entry.children:
                body["children"] = {c: None for c in entry.children}
            if entry.vars and clean(entry.vars):
                body["vars"] = clean(entry.vars)
            children[name] = body or None
        top: dict[str, Any] = {"hosts": {h: (clean(v) or None) for h, v in self.hosts.items()}}
        if clean(all_entry.vars):
            top["vars"] = clean(all_entry.vars)
        if children:
            top["children"] = children
        return {"all": top}

    def secrets(self) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """(all-group secret vars, {group: secret vars}, {host: secret vars}) — for 0600 var files only."""
        all_vars = self.groups["all"].vars if "all" in self.groups else {}
        top = {k: v for k, v in all_vars.items() if k in SECRET_VARS}
        groups = {
            n: {k: v for k, v in g.vars.items() if k in SECRET_VARS}
            for n, g in self.groups.items()
            if n != "all" and any(k in SECRET_VARS for k in g.vars)
        }
        hosts = {
            h: {k: v for k, v in hv.items() if k in SECRET_VARS}
            for h, hv in self.hosts.items()
            if any(k in SECRET_VARS for k in hv)
        }
        return top, groups, hosts

    def secret_values(self) -> list[str]:
        """Every secret string in the inventory, for redacting output."""
        top, groups, hosts = self.secrets()
        values = [str(v) for v in top.values()]
        values += [str(v) for g in groups.values() for v in g.values()]
        values += [str(v) for h in hosts.values() for v in h.values()]
        return sorted({v for v in values if v}, key=len, reverse=True)

    def subset(self, names: list[str]) -> list[str]:
        """`names` that are hosts of this inventory; raise ConfigError naming the unknown ones."""
        unknown = [n for n in names if n not in self.hosts]
        if unknown:
            raise ConfigError(
                f"inventory: no host named {', '.join(unknown)}",
                hint=f"hosts in config.yaml: {', '.join(self.hosts) or '(none)'}; add the node there first",
            )
        return names


def _group(inv: ClusterInventory, name: str, path: str) -> GroupEntry:
    if name not in inv.groups:
        inv.groups[name] = GroupEntry(name, path)
    return inv.groups[name]


def _add_host(inv: ClusterInventory, name: str, hvars: dict[str, Any], path: str) -> None:
    if name not in inv.hosts:
        inv.hosts[name] = {}
        inv.host_paths[name] = path
    for key, value in hvars.items():
        old = inv.hosts[name].get(key)
        if old is not None and old != value:
            inv.problems.append(
                f"{path}.{key}: {value!r} conflicts with {old!r} set at {inv.host_paths[name]}.{key} for the same host"
            )
        inv.hosts[name][key] = value
        inv.var_paths[(name, key)] = f"{path}.{key}"


def _walk_yaml(inv: ClusterInventory, name: str, body: Any, path: str) -> None:
    entry = _group(inv, name, path)
    if body is None:
        return
    if not isinstance(body, dict):
        inv.problems.append(f"{path}: expected a mapping with hosts, children or vars, found {type(body).__name__}")
        return
    for key in body:
        if key not in ("hosts", "children", "vars"):
            inv.problems.append(f"{path}.{key}: unknown key (a group has hosts, children and vars)")
    gvars = body.get("vars") or {}
    if not isinstance(gvars, dict):
        inv.problems.append(f"{path}.vars: expected a mapping")
    else:
        entry.vars.update(gvars)
    hosts = body.get("hosts") or {}
    if not isinstance(hosts, dict):
        inv.problems.append(f"{path}.hosts: expected a mapping of host name to host variables")
        hosts = {}
    for host, hvars in hosts.items():
        hpath = f"{path}.hosts.{host}"
        host_vars: dict[str, Any] = {}
        if isinstance(hvars, dict):
            host_vars = dict(hvars)
        elif hvars is not None:
            inv.problems.append(f"{hpath}: expected host variables as a mapping, found {type(hvars).__name__}")
        _add_host(inv, str(host), host_vars, hpath)
        if str(host) not in entry.hosts and name != "all":
            entry.hosts.append(str(host))
    children = body.get("children") or {}
    if not isinstance(children, dict):
        inv.problems.append(f"{path}.children: expected a mapping of group names")
        children = {}
    for child, cbody in children.items():
        if str(child) not in entry.children:
            entry.children.append(str(child))
        _walk_yaml(inv, str(child), cbody, f"{path}.children.{child}")


def parse_yaml_inventory(raw: dict[str, Any], base: str = "inventory") -> ClusterInventory:
    """A ClusterInventory from an Ansible YAML inventory mapping (top-level keys are groups)."""
    inv = ClusterInventory("yaml")
    _group(inv, "all", f"{base}.all")
    for name, body in raw.items():
        _walk_yaml(inv, str(name), body, f"{base}.{name}")
    return inv


def _expand_range(pattern: str) -> list[str]:
    m = _RANGE.match(pattern)
    if not m:
        return [pattern]
    head, start, end, step, tail = m.groups()
    stride = int(step or 1)
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") else 0
        values = [str(i).zfill(width) for i in range(int(start), int(end) + 1, stride)]
    else:
        values = [chr(c) for c in range(ord(start), ord(end) + 1, stride)]
    return [n for v in values for n in _expand_range(f"{head}{v}{tail}")]


def _ini_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_ini_inventory(text: str, base: str = "inventory") -> ClusterInventory:
    """A ClusterInventory from an Ansible INI inventory ([group], [group:vars], [group:children], ranges)."""
    inv = ClusterInventory("ini")
    _group(inv, "all", f"{base}.all")
    section, kind = "ungrouped", "hosts"
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{base} (INI line {number})"
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("["):
            m = re.fullmatch(r"\[([^\]:]+)(?::(vars|children))?\]", stripped)
            if not m:
                inv.problems.append(f"{where}: cannot read section header {stripped!r}")
                continue
            section, kind = m.group(1), m.group(2) or "hosts"
            _group(inv, section, f"{base} [{section}]")
            if section != "all" and kind != "vars" and section not in inv.groups["all"].children:
                inv.groups["all"].children.append(section)
            continue
        try:
            tokens = shlex.split(stripped, comments=True)
        except ValueError as exc:
            inv.problems.append(f"{where}: {exc}")
            continue
        if not tokens:
            continue
        entry = inv.groups[section] if section in inv.groups else _group(inv, section, f"{base} [{section}]")
        if kind == "vars":
            key, sep, value = stripped.partition("=")
            if not sep:
                inv.problems.append(f"{where}: expected key=value in [{section}:vars]")
                continue
            entry.vars[key.strip()] = value.strip().strip("'\"")  # INI :vars values are strings
        elif kind == "children":
            if tokens[0] not in entry.children:
                entry.children.append(tokens[0])
            _group(inv, tokens[0], f"{base} [{tokens[0]}]")
        else:
            hvars: dict[str, Any] = {}
            for token in tokens[1:]:
                key, sep, value = token.partition("=")
                if not sep:
                    inv.problems.append(f"{where}: expected key=value after the host name, found {token!r}")
                    continue
                hvars[key] = _ini_value(value)
            for host in _expand_range(tokens[0]):
                _add_host(inv, host, hvars, f"{where} host {host}")
                if section not in ("all", "ungrouped") and host not in entry.hosts:
                    entry.hosts.append(host)
    if "ungrouped" in inv.groups and not inv.groups["ungrouped"].hosts:
        del inv.groups["ungrouped"]
    return inv


def parse_inventory(raw: Any, base: str = "inventory") -> ClusterInventory:
    """Parse config.yaml's inventory value (YAML mapping, INI string, or config.install's Inventory model)."""
    if hasattr(raw, "model_dump"):
        raw = raw.model_dump(mode="json", exclude_unset=True)  # what the file said, as the model read it
    if raw is None or raw == {}:
        raise ConfigError(f"{base}: missing", hint="add an `inventory:` section with your nodes to config.yaml")
    if isinstance(raw, str):
        return parse_ini_inventory(raw, base)
    if isinstance(raw, dict):
        return parse_yaml_inventory(raw, base)
    raise ConfigError(f"{base}: expected an Ansible YAML inventory or an INI string, found {type(raw).__name__}")


def _name_problem(name: str) -> str | None:
    if len(name) > 253:
        return "longer than 253 characters"
    for label in name.split("."):
        if not _LABEL.match(label):
            if label.lower() != label:
                return "has upper-case letters; Kubernetes node names are lower case (RFC 1123)"
            return "is not an RFC 1123 name (lower-case letters, digits, '-', '.'; labels of 1-63 chars)"
    return None


def _key_problem(path_text: str, base_dir: Path) -> str | None:
    path = Path(os.path.expanduser(path_text))
    if not path.is_absolute():
        path = base_dir / path
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if st.st_mode & 0o077:
        return f"{path} is readable by other users (mode {st.st_mode & 0o777:04o}); ssh refuses it: chmod 600 {path}"
    return None


def validation_problems(inv: ClusterInventory, base_dir: Path, base: str = "inventory") -> list[str]:
    """Everything wrong with the inventory, each naming its field path; empty when it is fit for kubespray."""
    problems = list(inv.problems)
    for legacy, current in LEGACY_GROUPS.items():
        if legacy in inv.groups:
            problems.append(f"{inv.groups[legacy].path}: group {legacy!r} is now {current!r} in kubespray; rename it")
    for group in REQUIRED_GROUPS:
        if group not in inv.groups:
            problems.append(f"{base}.all.children.{group}: missing; kubespray needs this group")
        elif not inv.members(group):
            problems.append(f"{inv.groups[group].path}: has no hosts; kubespray needs at least one")
    etcd = inv.members("etcd")
    if etcd and len(etcd) % 2 == 0:
        problems.append(
            f"{inv.groups['etcd'].path}: {len(etcd)} hosts ({', '.join(etcd)}); etcd needs an odd number for quorum"
        )
    for group, entry in inv.groups.items():
        for host in entry.hosts:
            if host not in inv.hosts:
                problems.append(f"{entry.path}.hosts.{host}: not defined")
        if group in inv.hosts:
            problems.append(f"{entry.path}: {group!r} is both a group and a host name")
    lowered: dict[str, str] = {}
    addresses: dict[tuple[str, str], str] = {}
    node_ips: dict[str, str] = {}
    for host in inv.hosts:
        path = inv.host_paths[host]
        reason = _name_problem(host)
        if reason:
            problems.append(f"{path}: host name {host!r} {reason}")
        if host.lower() in lowered:
            problems.append(f"{path}: host {host!r} duplicates {lowered[host.lower()]!r} (names are case-insensitive)")
        lowered.setdefault(host.lower(), host)
        hv = inv.host_vars(host)
        address = hv.get("ansible_host")
        if not address:
            problems.append(
                f"{inv.where(host, 'ansible_host')}: missing; every host needs the address Ansible connects to"
            )
        else:
            text = str(address)
            try:
                text = str(ipaddress.ip_address(text))
            except ValueError:
                text = text.lower()
            key = (text, str(hv.get("ansible_port", 22)))
            if key in addresses:
                problems.append(f"{inv.where(host, 'ansible_host')}: {text} is also the address of {addresses[key]}")
            addresses.setdefault(key, host)
        if hv.get("ip"):
            ip = str(hv["ip"])
            if ip in node_ips:
                problems.append(f"{inv.where(host, 'ip')}: {ip} is also the node address of {node_ips[ip]}")
            node_ips.setdefault(ip, host)
        for var in KEY_VARS:
            if hv.get(var):
                reason = _key_problem(str(hv[var]), base_dir)
                if reason:
                    problems.append(f"{path}.{var}: {reason}")
    return problems


def load_inventory(raw: Any, base_dir: Path, source: str = "config.yaml") -> ClusterInventory:
    """Parse and validate; raise ConfigError listing every problem with its field path."""
    inv = parse_inventory(raw)
    problems = validation_problems(inv, base_dir)
    if problems:
        raise ConfigError(
            f"{source}: inventory is not ready for kubespray:\n  " + "\n  ".join(problems),
            hint="fix these in config.yaml's inventory section; nothing has been changed on any host",
        )
    for hv in inv.hosts.values():
        for var in KEY_VARS:
            if hv.get(var):
                hv[var] = str((base_dir / os.path.expanduser(str(hv[var]))).resolve())
    for entry in inv.groups.values():
        for var in KEY_VARS:
            if entry.vars.get(var):
                entry.vars[var] = str((base_dir / os.path.expanduser(str(entry.vars[var]))).resolve())
    return inv


def cluster_inventory(cfg: InstallConfig, config_path: Path) -> ClusterInventory:
    """The inventory of a validated config.yaml, checked for kubespray (key files relative to the file's
    directory); raise ConfigError listing every problem with its field path."""
    return load_inventory(cfg.inventory, config_path.resolve().parent, source=str(config_path))
