"""Facts about the deploy node: OS release, architecture, primary address, systemd. Read-only, no traffic."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARCH_NAMES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
APT_FAMILY = {"debian", "ubuntu"}
RPM_FAMILY = {"rhel", "centos", "fedora", "rocky", "almalinux", "ol", "openeuler", "kylin", "anolis"}


@dataclass(frozen=True)
class OsInfo:
    id: str
    version_id: str
    codename: str
    id_like: tuple[str, ...]
    pretty: str

    @property
    def family(self) -> str:
        """'apt', 'rpm' or 'unknown'."""
        ids = {self.id, *self.id_like}
        if ids & APT_FAMILY:
            return "apt"
        if ids & RPM_FAMILY:
            return "rpm"
        return "unknown"

    @property
    def release_names(self) -> tuple[str, ...]:
        """Every name a bundle may file this release under: VERSION_ID, its major number, the codename."""
        return tuple(dict.fromkeys(n for n in (self.version_id, self.version_id.split(".")[0], self.codename) if n))

    @property
    def release(self) -> str:
        """The name bundles use for this release: the codename on apt systems, the major version on rpm."""
        if self.family == "apt" and self.codename:
            return self.codename
        return self.version_id.split(".")[0] if self.family == "rpm" else (self.codename or self.version_id)


def parse_os_release(text: str) -> OsInfo:
    values: dict[str, str] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
        except ValueError:
            parts = [raw]
        values[key] = parts[0] if parts else ""
    return OsInfo(
        id=values.get("ID", "").lower(),
        version_id=values.get("VERSION_ID", ""),
        codename=values.get("VERSION_CODENAME", ""),
        id_like=tuple(values.get("ID_LIKE", "").lower().split()),
        pretty=values.get("PRETTY_NAME", values.get("ID", "unknown")),
    )


def read_os_release(root: Path = Path("/")) -> OsInfo:
    for candidate in (root / "etc/os-release", root / "usr/lib/os-release"):
        if candidate.exists():
            return parse_os_release(candidate.read_text(encoding="utf-8"))
    return OsInfo(id="unknown", version_id="", codename="", id_like=(), pretty="unknown (no /etc/os-release)")


def machine_arch() -> str:
    """amd64 / arm64, or the kernel's machine name when kubeplay has no name for it."""
    m = platform.machine().lower()
    return ARCH_NAMES.get(m, m)


def systemd_running(root: Path = Path("/")) -> bool:
    """True when systemd is PID 1 (the sd_booted() test: /run/systemd/system exists)."""
    return (root / "run/systemd/system").is_dir()


@dataclass(frozen=True)
class Address:
    ip: str
    prefixlen: int
    dev: str


def _ip_json(args: list[str]) -> Any:
    try:
        out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    try:
        return json.loads(out or "[]")
    except json.JSONDecodeError:
        return []


def _global_v4(addrs: list[dict[str, Any]]) -> list[Address]:
    found: list[Address] = []
    for link in addrs:
        if "LOOPBACK" in link.get("flags", []):
            continue
        for a in link.get("addr_info", []):
            if a.get("family") == "inet" and a.get("scope", "global") == "global":
                found.append(Address(ip=a["local"], prefixlen=int(a.get("prefixlen", 32)), dev=link["ifname"]))
    return found


def primary_address(routes: list[dict[str, Any]], addrs: list[dict[str, Any]]) -> Address | None:
    """The address of the interface holding the default route; else the only global IPv4 address; else None.

    Computed from `ip -j route` and `ip -j addr` output, so nothing is sent anywhere.
    """
    candidates = _global_v4(addrs)
    for r in routes:
        if r.get("dst") == "default" and r.get("dev"):
            on_dev = [a for a in candidates if a.dev == r["dev"]]
            preferred = [a for a in on_dev if a.ip == r.get("prefsrc")]
            if preferred or on_dev:
                return (preferred or on_dev)[0]
    if len({a.ip for a in candidates}) == 1:
        return candidates[0]
    return None


def detect_primary_address() -> Address | None:
    return primary_address(_ip_json(["route", "show"]), _ip_json(["addr", "show"]))


def address_prefixlen(ip: str) -> int | None:
    """The prefix length of a local address (for the chrony `allow` subnet), or None if not local."""
    for a in _global_v4(_ip_json(["addr", "show"])):
        if a.ip == ip:
            return a.prefixlen
    return None


def is_root() -> bool:
    return os.geteuid() == 0
