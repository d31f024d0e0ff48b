"""nginx for the deploy node: its own complete configuration file and unit, never the distro's default site."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from kubeplay.bootstrap.paths import UNIT_REGISTRY, HostPaths
from kubeplay.bootstrap.render import render

WORKER_USERS = ("www-data", "nginx")


@dataclass(frozen=True)
class NginxSettings:
    served_dir: Path
    http_port: int
    https_port: int
    push_port: int
    registry_domain: str
    registry_ip: str
    ca_cert: Path
    server_cert: Path
    server_key: Path
    temp_dir: Path
    log_dir: Path
    pid_file: Path
    worker_user: str
    ipv6: bool
    registry_storage: Path  # the registry's rootdirectory: nginx serves blob content by digest from it


def settings_for(
    paths: HostPaths,
    *,
    served_dir: Path,
    http_port: int,
    https_port: int,
    push_port: int,
    registry_domain: str,
    registry_ip: str,
    worker_user: str,
    ipv6: bool,
    registry_storage: Path | None = None,
) -> NginxSettings:
    return NginxSettings(
        served_dir=served_dir,
        http_port=http_port,
        https_port=https_port,
        push_port=push_port,
        registry_domain=registry_domain,
        registry_ip=registry_ip,
        ca_cert=paths.ca_cert,
        server_cert=paths.server_cert,
        server_key=paths.server_key,
        temp_dir=paths.state / "nginx",
        log_dir=paths.logs,
        pid_file=paths.state / "nginx.pid",
        worker_user=worker_user,
        ipv6=ipv6,
        registry_storage=registry_storage or served_dir / "registry",
    )


def render_nginx_conf(s: NginxSettings) -> str:
    return render("nginx.conf.j2", **s.__dict__)


def render_nginx_unit(nginx_bin: str, nginx_conf: Path, pid_file: Path) -> str:
    return render(
        "kubeplay-nginx.service.j2",
        nginx_bin=nginx_bin,
        nginx_conf=nginx_conf,
        pid_file=pid_file,
        registry_unit=UNIT_REGISTRY,
    )


def nginx_binary() -> str | None:
    for candidate in ("/usr/sbin/nginx", "/usr/bin/nginx"):
        if Path(candidate).is_file():
            return candidate
    return shutil.which("nginx")


def ipv6_available() -> bool:
    return Path("/proc/net/if_inet6").exists() and Path("/proc/net/if_inet6").stat().st_size > 0


def _passwd_entry(name: str, passwd: Path) -> tuple[int, int] | None:
    if not passwd.exists():
        return None
    for line in passwd.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[0] == name:
            return int(parts[2]), int(parts[3])
    return None


def readable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether uid/gid can traverse every directory down to `path` (and read it, if a file)."""
    try:
        resolved = path.resolve()
        for p in [*reversed(resolved.parents), resolved]:
            st = p.stat()
            bit = stat.S_IXOTH if stat.S_ISDIR(st.st_mode) else stat.S_IROTH
            shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
            if not st.st_mode & (bit << shift):
                return False
    except OSError:
        return False
    return True


def choose_worker_user(served: list[Path], passwd: Path = Path("/etc/passwd")) -> str:
    """The distro's unprivileged nginx user if it can read everything served, else root.

    A bundle unpacked under /root is not readable by www-data; rather than change the operator's
    permissions, workers then run as root (the unit still forbids new privileges).
    """
    for name in WORKER_USERS:
        ids = _passwd_entry(name, passwd)
        if ids is not None:
            if all(readable_by(p, *ids) for p in served if p.exists()):
                return name
            return "root"
    return pwd.getpwuid(os.geteuid()).pw_name
