"""Preflight: everything that would make install fail half-way, checked first and reported as one list."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from kubeplay.bootstrap.bundleinfo import BundleFacts
from kubeplay.bootstrap.context import InstallContext
from kubeplay.bootstrap.hostinfo import OsInfo, is_root, systemd_running
from kubeplay.bootstrap.merge import plan_merge
from kubeplay.bootstrap.ports import Holder, Listener, ports_in_use
from kubeplay.errors import BadInput, BundleError

MIN_FREE_STATE = 256 * 1024 * 1024
MIN_PYTHON = (3, 11)


@dataclass(frozen=True)
class Problem:
    check: str
    message: str
    hint: str = ""

    def line(self) -> str:
        return f"{self.check}: {self.message}" + (f" ({self.hint})" if self.hint else "")


def check_os(os_info: OsInfo, arch: str, bundle: BundleFacts) -> list[Problem]:
    """The deploy node's distro and arch must be ones the bundle carries packages for."""
    problems: list[Problem] = []
    if bundle.arches and arch not in bundle.arches:
        problems.append(
            Problem(
                "arch",
                f"this node is {arch}; the bundle was built for {', '.join(bundle.arches)}",
                "build a bundle with this arch in `arches:`",
            )
        )
    if os_info.family == "unknown":
        problems.append(Problem("os", f"unsupported OS {os_info.pretty}", "kubeplay supports apt and rpm distros"))
    elif bundle.repo_for(os_info.id, *os_info.release_names) is None:
        have = ", ".join(bundle.os_names()) or "none"
        problems.append(
            Problem(
                "os",
                f"the bundle has no OS package repo for this node's {os_info.id} {os_info.release} (it has: {have})",
                f"build a bundle with `os: [{{distro: {os_info.id}, release: {os_info.release}}}]`",
            )
        )
    return problems


def describe_port_use(port: int, uses: list[tuple[Listener, Holder | None]]) -> str:
    who = []
    for lst, holder in uses:
        who.append(f"{holder.describe() if holder else 'an unknown process'} on {lst.address}")
    return f"port {port} is in use by " + "; ".join(dict.fromkeys(who))


def check_ports(wanted: dict[int, str], own_markers: list[str], proc: Path = Path("/proc")) -> list[Problem]:
    """Ports must be free, except when held by kubeplay's own services (a re-run)."""
    problems: list[Problem] = []
    for port, uses in sorted(ports_in_use(list(wanted), proc).items()):
        foreign = [(lst, h) for lst, h in uses if not (h and any(m in h.cmdline for m in own_markers))]
        if foreign:
            problems.append(
                Problem(
                    "port",
                    f"{describe_port_use(port, foreign)}; kubeplay needs it for {wanted[port]}",
                    "stop that service, or choose another port in config.yaml",
                )
            )
    return problems


def check_disk(path: Path, minimum: int = MIN_FREE_STATE) -> list[Problem]:
    probe = path
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < minimum:
        return [
            Problem(
                "disk",
                f"{probe} has {free // (1024 * 1024)} MiB free; install needs {minimum // (1024 * 1024)} MiB",
                "free some space",
            )
        ]
    return []


def check_python(version: tuple[int, int] | None = None) -> list[Problem]:
    v = version or (sys.version_info.major, sys.version_info.minor)
    if v < MIN_PYTHON:
        return [Problem("python", f"Python {v[0]}.{v[1]} is too old; kubeplay needs 3.11 or newer")]
    return []


def check_bundle(bundle: BundleFacts) -> list[Problem]:
    problems = []
    if not (bundle.registry_dir / "docker/registry/v2").is_dir():
        problems.append(Problem("bundle", f"{bundle.registry_dir} holds no registry storage", "run `kubeplay verify`"))
    return problems


def check_privileges(is_root: bool, systemd: bool, no_systemd: bool) -> list[Problem]:
    problems = []
    if not is_root:
        problems.append(Problem("user", "install must run as root", "run it with sudo"))
    if not systemd and not no_systemd:
        problems.append(
            Problem(
                "systemd",
                "systemd is not running as PID 1 here, so kubeplay-registry and kubeplay-nginx cannot be units",
                "boot the deploy node with systemd, or run `kubeplay install --no-systemd` to serve in the foreground",
            )
        )
    return problems


def check_served(ctx: InstallContext) -> list[Problem]:
    """A delta for another base, content neither carried nor served, a path served with other content:
    refused here, before anything on this node changes."""
    try:
        plan_merge(ctx.bundle.root, ctx.paths)
    except (BadInput, BundleError) as exc:
        return [Problem("bundle", exc.message, exc.hint or "")]
    return []


def check_host(ctx: InstallContext) -> str:
    """Install's preflight: every check at once; return what was found, or raise BadInput listing each problem."""
    c = ctx.cfg
    wanted = {
        c.nginx_http_port: "nginx (files, repos, CA over HTTP)",
        c.registry_https_port: "nginx (registry over TLS)",
        c.registry_push_port: "the registry (push, loopback)",
    }
    own = [str(ctx.paths.nginx_conf), str(ctx.paths.registry_conf)]
    problems = [
        *check_privileges(is_root(), systemd_running(), ctx.no_systemd),
        *check_os(ctx.os_info, ctx.arch, ctx.bundle),
        *check_bundle(ctx.bundle),
        *check_ports(wanted, own),
        *check_disk(ctx.paths.state),
        *check_python(),
    ]
    problems.extend(check_served(ctx))
    if problems:
        lines = "\n".join(f"  - {p.line()}" for p in problems)
        raise BadInput(
            f"preflight found {len(problems)} problem(s):\n{lines}", hint="fix these, then run install again"
        )
    return f"{ctx.os_info.pretty}, {ctx.arch}, ports {', '.join(str(p) for p in sorted(wanted))} free"
