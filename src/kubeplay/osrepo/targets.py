"""Supported OS targets: distro, release, codename, package family, and the default package lists.

The default lists are the union of kubespray's own system packages for the OS family
(roles/system_packages/vars/main.yml with kubespray's defaults: kube_proxy_mode=ipvs, ntp via chrony),
the original kubeplay list (storage clients, conntrack, ipvsadm, ...), and what the deploy node runs
(nginx, chrony, a Python able to create a venv) plus containerd for Debian lab nodes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Literal

from kubeplay.errors import BadInput

Family = Literal["apt", "rpm"]

# Debian arch name -> rpm basearch.
RPM_BASEARCH: dict[str, str] = {"amd64": "x86_64", "arm64": "aarch64"}


@dataclass(frozen=True)
class Target:
    """One supported distro release."""

    distro: str
    release: str
    family: Family
    codename: str = ""  # apt suite name; empty for rpm
    keyring: str = ""  # default keyring verifying the upstream index signature
    components: tuple[str, ...] = ("main",)
    # rpm: repo ids and their path below the mirror ({release}, {basearch}, {repo} are filled in).
    rpm_repos: tuple[str, ...] = ()
    rpm_path: str = ""
    extra_packages: tuple[str, ...] = field(default=())
    dropped_packages: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        return f"{self.distro} {self.release}"


_DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
_UBUNTU_KEYRING = "/usr/share/keyrings/ubuntu-archive-keyring.gpg"
_EL_PATH = "{release}/{repo}/{basearch}/os/"

TARGETS: tuple[Target, ...] = (
    Target("debian", "11", "apt", "bullseye", _DEBIAN_KEYRING, extra_packages=("gnupg",)),
    Target("debian", "12", "apt", "bookworm", _DEBIAN_KEYRING, extra_packages=("gnupg", "mergerfs")),
    Target("debian", "13", "apt", "trixie", _DEBIAN_KEYRING, dropped_packages=("software-properties-common",)),
    Target("ubuntu", "22.04", "apt", "jammy", _UBUNTU_KEYRING, ("main", "universe")),
    Target("ubuntu", "24.04", "apt", "noble", _UBUNTU_KEYRING, ("main", "universe")),
    Target("rocky", "8", "rpm", rpm_repos=("BaseOS", "AppStream"), rpm_path=_EL_PATH),
    Target("rocky", "9", "rpm", rpm_repos=("BaseOS", "AppStream"), rpm_path=_EL_PATH),
    Target("almalinux", "8", "rpm", rpm_repos=("BaseOS", "AppStream"), rpm_path=_EL_PATH),
    Target("almalinux", "9", "rpm", rpm_repos=("BaseOS", "AppStream"), rpm_path=_EL_PATH),
    Target("rhel", "8", "rpm", rpm_repos=("BaseOS", "AppStream"), rpm_path=_EL_PATH),
    Target("rhel", "9", "rpm", rpm_repos=("BaseOS", "AppStream"), rpm_path=_EL_PATH),
    Target(
        "openeuler",
        "22.03",
        "rpm",
        rpm_repos=("OS", "everything", "update"),
        rpm_path="openEuler-22.03-LTS-SP4/{repo}/{basearch}/",
        extra_packages=("conntrack-tools", "device-mapper"),
        dropped_packages=("conntrack", "device-mapper-libs", "container-selinux"),
    ),
    Target(
        "openeuler",
        "24.03",
        "rpm",
        rpm_repos=("OS", "everything", "update"),
        rpm_path="openEuler-24.03-LTS/{repo}/{basearch}/",
        extra_packages=("conntrack-tools", "device-mapper"),
        dropped_packages=("conntrack", "device-mapper-libs", "container-selinux"),
    ),
)

# kubespray roles/system_packages for the Debian family (ipvs proxy mode, chrony, ping_access_ip).
KUBESPRAY_APT = (
    "apparmor", "apt-transport-https", "bash-completion", "chrony", "conntrack", "curl", "e2fsprogs",
    "ebtables", "iproute2", "iptables", "iputils-ping", "ipvsadm", "libseccomp2", "openssl", "python3-apt",
    "rsync", "socat", "software-properties-common", "tar", "unzip", "xfsprogs", "ipset", "nftables",
)  # fmt: skip
KUBESPRAY_RPM = (
    "bash-completion", "chrony", "conntrack", "container-selinux", "curl", "device-mapper-libs", "e2fsprogs",
    "ebtables", "iproute", "iptables", "iputils", "ipvsadm", "libseccomp", "nss", "openssl",
    "python3-libselinux", "rsync", "socat", "tar", "unzip", "xfsprogs", "ipset", "nftables",
)  # fmt: skip
# The original kubeplay's packages.yaml, by family.
KUBEPLAY_APT = (
    "conntrack", "ipset", "ipvsadm", "socat", "ebtables", "ethtool", "chrony", "nfs-common", "ceph-common",
    "glusterfs-client", "cifs-utils", "lvm2", "fuse", "jq", "bash-completion",
)  # fmt: skip
KUBEPLAY_RPM = (
    "conntrack", "ipset", "ipvsadm", "socat", "ebtables", "ethtool", "chrony", "nfs-utils", "glusterfs-fuse",
    "cifs-utils", "lvm2", "fuse", "jq", "bash-completion",
)  # fmt: skip
# The deploy node serves files and repos with nginx and images with the distribution registry (docker-registry;
# EL has no such package in its base repos: rpm deploy nodes need it from elsewhere), keeps time with chrony,
# runs kubeplay in a venv and reaches password-SSH nodes through sshpass. containerd is for the nodes. gpg
# signs the served OS repos' indexes (the deploy node's own key: bootstrap/reindex.py).
DEPLOY_APT = (
    "nginx", "chrony", "python3-venv", "containerd", "docker-registry", "sshpass", "curl", "ca-certificates",
    "gpg", "gpg-agent",
)  # fmt: skip
DEPLOY_RPM = ("nginx", "chrony", "python3", "sshpass", "curl", "ca-certificates", "gnupg2")


def supported_list() -> str:
    """Human-readable list of every supported distro and release."""
    by_distro: dict[str, list[str]] = {}
    for t in TARGETS:
        by_distro.setdefault(t.distro, []).append(t.release + (f" ({t.codename})" if t.codename else ""))
    return "; ".join(f"{d} {', '.join(rs)}" for d, rs in by_distro.items())


def find_target(distro: str, release: str) -> Target:
    """The Target for distro/release (codenames accepted); BadInput listing the supported ones otherwise."""
    d = distro.strip().lower()
    aliases = {"alma": "almalinux", "rockylinux": "rocky", "redhat": "rhel", "centos": "rocky"}
    d = aliases.get(d, d)
    r = str(release).strip().lower()
    for t in TARGETS:
        if t.distro == d and r in {t.release, t.codename, t.release.split(".")[0] if t.family == "rpm" else ""}:
            return t
    distros = sorted({t.distro for t in TARGETS})
    if d not in distros:
        close = difflib.get_close_matches(d, distros, n=3)
        hint = (f"did you mean {', '.join(close)}? " if close else "") + f"supported: {supported_list()}"
        raise BadInput(f"unknown distro {distro!r} in os:", hint=hint)
    releases = [t.release for t in TARGETS if t.distro == d]
    raise BadInput(
        f"unknown release {release!r} for {d}",
        hint=f"supported {d} releases: {', '.join(releases)}; all targets: {supported_list()}",
    )


def repo_dir(target: Target) -> str:
    """The target's repo directory inside a bundle: repos/apt/<distro>/<codename> or repos/rpm/<distro>/<release>."""
    if target.family == "apt":
        return f"repos/apt/{target.distro}/{target.codename}"
    return f"repos/rpm/{target.distro}/{target.release}"


def default_packages(target: Target) -> list[str]:
    """The default package list for a target (deduplicated, order kept)."""
    base: tuple[str, ...]
    if target.family == "apt":
        base = (*KUBESPRAY_APT, *KUBEPLAY_APT, *DEPLOY_APT)
    else:
        base = (*KUBESPRAY_RPM, *KUBEPLAY_RPM, *DEPLOY_RPM)
    names = [n for n in (*base, *target.extra_packages) if n not in target.dropped_packages]
    return list(dict.fromkeys(names))
