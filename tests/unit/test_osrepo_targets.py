"""Supported targets, their defaults, and what a wrong distro or release tells the user."""

from __future__ import annotations

import pytest

from kubeplay.errors import BadInput
from kubeplay.osrepo.targets import default_packages, find_target


@pytest.mark.parametrize(
    ("distro", "release", "label", "codename"),
    [
        ("debian", "12", "debian 12", "bookworm"),
        ("Debian", "bookworm", "debian 12", "bookworm"),
        ("ubuntu", "22.04", "ubuntu 22.04", "jammy"),
        ("rocky", "9", "rocky 9", ""),
        ("alma", "8", "almalinux 8", ""),
        ("openeuler", "22.03", "openeuler 22.03", ""),
    ],
)
def test_find_target_accepts_names_codenames_and_aliases(distro: str, release: str, label: str, codename: str) -> None:
    target = find_target(distro, release)
    assert target.label == label
    assert target.codename == codename


def test_unknown_distro_suggests_closest_and_lists_supported() -> None:
    with pytest.raises(BadInput) as err:
        find_target("debain", "12")
    assert "debain" in err.value.message
    assert "did you mean debian" in (err.value.hint or "")
    assert "ubuntu 22.04 (jammy)" in (err.value.hint or "")
    assert err.value.exit_code == 2


def test_unknown_release_lists_that_distros_releases() -> None:
    with pytest.raises(BadInput) as err:
        find_target("debian", "10")
    assert "11, 12, 13" in (err.value.hint or "")


def test_debian_defaults_cover_kubespray_kubeplay_and_deploy_node() -> None:
    names = default_packages(find_target("debian", "12"))
    for needed in ("conntrack", "ipset", "ipvsadm", "socat", "ebtables", "ethtool", "chrony", "nfs-common",
                   "ceph-common", "glusterfs-client", "cifs-utils", "lvm2", "fuse", "nginx", "python3-venv",
                   "containerd", "python3-apt", "mergerfs", "apparmor"):  # fmt: skip
        assert needed in names
    assert len(names) == len(set(names))
    assert "software-properties-common" not in default_packages(find_target("debian", "13"))


def test_rpm_defaults_follow_the_family_and_openeuler_quirks() -> None:
    rocky = default_packages(find_target("rocky", "9"))
    assert {"conntrack", "container-selinux", "iproute", "nfs-utils", "nginx", "python3"} <= set(rocky)
    euler = default_packages(find_target("openeuler", "24.03"))
    assert "conntrack-tools" in euler and "conntrack" not in euler
