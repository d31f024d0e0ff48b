"""Lab pure logic: address plans, subnet clashes with host routes, apt sources, ssh command lines, copy_in guards."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from kubeplay.errors import BadInput
from kubeplay.lab import machines, network, rootfs, ssh
from kubeplay.lab.nodes import LabNode


def test_address_plan_puts_bridge_first_and_nodes_from_ten() -> None:
    plan = network.plan_addresses("10.213.0.0/24", 3)
    assert str(plan.bridge_ip) == "10.213.0.1"
    assert [str(ip) for ip in plan.node_ips] == ["10.213.0.10", "10.213.0.11", "10.213.0.12"]
    assert str(network.plan_addresses("10.213.0.0/28", 5).node_ips[-1]) == "10.213.0.14"


@pytest.mark.parametrize(
    ("subnet", "nodes", "message"),
    [
        ("10.213.0.1/24", 2, "not an IPv4 network"),
        ("8.8.8.0/24", 2, "not a private range"),
        ("10.213.0.0/28", 6, "room for 5 nodes"),
        ("10.213.0.0/24", 0, "at least 1"),
        ("fd00::/64", 1, "not an IPv4 network"),
    ],
)
def test_address_plan_refuses_bad_input(subnet: str, nodes: int, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        network.plan_addresses(subnet, nodes)


def test_overlapping_routes_names_the_clash_and_ignores_default() -> None:
    routes: list[dict[str, object]] = [
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
        {"dst": "192.0.2.0/24", "dev": "eth0"},
        {"dst": "10.0.0.0/8", "dev": "wg0", "table": "100"},
        {"dst": "10.213.0.7", "dev": "tun0", "table": "local"},
    ]
    assert network.overlapping_routes(ipaddress.IPv4Network("172.30.0.0/24"), routes) == []
    assert network.overlapping_routes(ipaddress.IPv4Network("10.213.0.0/24"), routes) == [
        "10.0.0.0/8 dev wg0 table 100",
        "10.213.0.7 dev tun0 table local",
    ]


@pytest.mark.parametrize(
    ("name", "ok"), [("lab", True), ("t123x4", True), ("Lab", False), ("-x", False), ("a" * 13, False)]
)
def test_lab_names_fit_interface_and_namespace_rules(name: str, ok: bool) -> None:
    assert network.valid_name(name) is ok


def test_apt_sources_deb822_and_one_line() -> None:
    deb822 = (
        "Types: deb deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\n# comment\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nEnabled: no\nURIs: http://disabled.example/debian\nSuites: bookworm\n"
    )
    assert rootfs.parse_apt_sources(deb822, deb822=True) == [
        ("http://mirror.example/debian", ["bookworm", "bookworm-updates"]),
        ("http://mirror.example/debian-security", ["bookworm-security"]),
    ]
    one_line = "# deb http://old.example/ x main\ndeb [signed-by=/k.gpg] http://m.example/debian bookworm main\n"
    assert rootfs.parse_apt_sources(one_line, deb822=False) == [("http://m.example/debian", ["bookworm"])]


def test_rootfs_cache_key_follows_packages_not_order() -> None:
    a = rootfs.RootfsSpec(extra_packages=("curl", "gnupg"))
    b = rootfs.RootfsSpec(extra_packages=("gnupg", "curl"))
    assert a.key() == b.key() != rootfs.RootfsSpec().key()
    assert rootfs.RootfsSpec(suite="trixie").key() != rootfs.RootfsSpec().key()


def test_base_rootfs_leaves_bundle_packages_to_the_offline_repo() -> None:
    for pkg in ("chrony", "nginx", "containerd", "curl"):
        assert pkg not in rootfs.BASE_PACKAGES
    assert {"python3", "sudo", "openssh-server", "systemd-sysv"} <= set(rootfs.BASE_PACKAGES)


def test_ssh_argv_runs_in_the_lab_namespace_with_pinned_host_keys() -> None:
    opts = ssh.ssh_options(Path("/l/id"), Path("/l/known_hosts"))
    argv = ssh.ssh_argv("kplab-x", opts, "10.213.0.10", ["echo", "a b"])
    assert argv[:4] == ["ip", "netns", "exec", "kplab-x"]
    assert "StrictHostKeyChecking=yes" in argv and "UserKnownHostsFile=/l/known_hosts" in argv
    assert argv[-3:] == ["root@10.213.0.10", "--", "echo 'a b'"]
    assert ssh.ssh_argv("kplab-x", opts, "10.213.0.10", "echo $HOME")[-1] == "echo $HOME"


def test_known_hosts_lines_pin_ip_and_name() -> None:
    text = ssh.known_hosts_lines([("10.213.0.10", "node0", "ssh-ed25519 AAAAkey root@node0")])
    assert text == "10.213.0.10,node0 ssh-ed25519 AAAAkey\n"


def test_nspawn_runs_without_host_systemd_in_the_node_namespace() -> None:
    argv = machines.nspawn_argv(Path("/l/nodes/node0"), "kplab-x-node0", "kplab-x-node0")
    assert "--boot" in argv and "--register=no" in argv and "--keep-unit" in argv
    assert "--network-namespace-path=/run/netns/kplab-x-node0" in argv
    assert not any(a.startswith("--network-veth") for a in argv)


def _node(root: Path) -> LabNode:
    return LabNode(name="node0", ip="10.213.0.10", machine="m", root=root, lab_netns="kplab-x", ssh_options=[])


def test_copy_in_writes_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    src = tmp_path / "f.txt"
    src.write_text("payload")
    written = _node(root).copy_in(src, "/opt/kubeplay/f.txt")
    assert written == root / "opt" / "kubeplay" / "f.txt"
    assert written.read_text() == "payload"


@pytest.mark.parametrize("dest", ["relative/path", "/", "/opt/../../etc/passwd"])
def test_copy_in_refuses_bad_destinations(tmp_path: Path, dest: str) -> None:
    src = tmp_path / "f.txt"
    src.write_text("x")
    with pytest.raises(BadInput):
        _node(tmp_path).copy_in(src, dest)


def test_copy_in_refuses_to_follow_a_symlink_out_of_the_node(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    src = tmp_path / "f.txt"
    src.write_text("x")
    with pytest.raises(BadInput, match="symlink"):
        _node(root).copy_in(src, "/escape/f.txt")
    assert list(outside.iterdir()) == []


def test_process_identity_rejects_a_reused_pid() -> None:
    import os

    me = os.getpid()
    start = machines.process_start_time(me)
    assert start is not None
    assert machines.is_running(me, start)
    assert not machines.is_running(me, start + 1)


def test_teardown_refuses_a_recorded_dir_outside_the_lab(tmp_path: Path) -> None:
    from kubeplay.errors import TeardownRefused
    from kubeplay.lab.record import Resource
    from kubeplay.lab.teardown import remove_resource

    lab_dir, elsewhere = tmp_path / "lab", tmp_path / "precious"
    lab_dir.mkdir()
    elsewhere.mkdir()
    with pytest.raises(TeardownRefused, match="outside the lab directory"):
        remove_resource(Resource(kind="dir", name=str(elsewhere)), lab_dir)
    assert elsewhere.is_dir()
    inside = lab_dir / "nodes" / "node0"
    inside.mkdir(parents=True)
    assert remove_resource(Resource(kind="dir", name=str(inside)), lab_dir) is True
    assert not inside.exists()
    assert remove_resource(Resource(kind="dir", name=str(inside)), lab_dir) is False
