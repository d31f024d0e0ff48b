"""config.yaml: the original kubeplay sample loads; mistakes are named by field path; placeholders resolve."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kubeplay.bootstrap.hostinfo import parse_os_release, primary_address
from kubeplay.config.install import load_install_config, resolve
from kubeplay.errors import ConfigError

# The original kubeplay's config-sample.yaml (k8sli/kubeplay), trimmed of comments.
ORIGINAL_SAMPLE = """\
compose:
  internal_ip: 172.20.0.25
  nginx_http_port: 8080
  registry_domain: kube.registry.local
kubespray:
  kube_version: v1.22.5
  external_apiserver_access_ip: 127.0.0.1
  kube_network_plugin: calico
  container_manager: containerd
  etcd_deployment_type: host
  etcd_events_cluster_setup: true
  etcd_events_cluster_enabled: true
inventory:
  all:
    vars:
      ansible_port: 22
      ansible_user: root
      ansible_ssh_pass: Password
    hosts:
      node1:
        ansible_host: 172.20.0.21
      node2:
        ansible_host: 172.20.0.22
    children:
      kube_control_plane:
        hosts:
          node1:
      kube_node:
        hosts:
          node1:
          node2:
      etcd:
        hosts:
          node1:
      k8s_cluster:
        children:
          kube_control_plane:
          kube_node:
      gpu:
        hosts: {}
      calico_rr:
        hosts: {}
default:
  ntp_server:
    - internal_ip
  registry_ip: internal_ip
  offline_resources_url: internal_ip:nginx_http_port
  offline_resources_enabled: true
  image_repository: library
  kubespray_image: "kubespray"
  generate_domain_crt: true
  registry_https_port: 443
  registry_push_port: 5000
  download_container: false
  cilium_enable_hubble: false
  cilium_hubble_install: false
  cilium_hubble_tls_generate: false
  cilium_kube_proxy_replacement: probe
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_original_sample_loads_and_placeholders_resolve(tmp_path: Path) -> None:
    path = write(tmp_path, ORIGINAL_SAMPLE)
    before = path.read_text()
    cfg = load_install_config(path)
    eff = resolve(cfg, path, detected_ip=None, prefixlen=24)
    assert eff.internal_ip == "172.20.0.25"
    assert eff.registry_ip == "172.20.0.25"
    assert eff.ntp_servers == ["172.20.0.25"]
    assert eff.offline_resources_url == "http://172.20.0.25:8080"
    assert eff.registry_url == "kube.registry.local"
    assert eff.ntp_allow == ["172.20.0.0/24"]
    assert eff.config["compose"]["internal_ip"] == "172.20.0.25"
    assert eff.config["kubespray"]["etcd_events_cluster_setup"] is True
    assert path.read_text() == before, "the user's config must never be rewritten"


@pytest.mark.parametrize("value", ["", "''", "null", None])
def test_empty_or_missing_internal_ip_uses_detected_address(tmp_path: Path, value: str | None) -> None:
    line = "" if value is None else f"  internal_ip: {value}\n"
    path = write(tmp_path, f"compose:\n{line}  nginx_http_port: 8080\n")
    cfg = load_install_config(path)
    assert cfg.compose.internal_ip is None
    eff = resolve(cfg, path, detected_ip="10.9.8.7", prefixlen=16)
    assert eff.internal_ip == "10.9.8.7" and eff.internal_ip_detected
    assert eff.offline_resources_url == "http://10.9.8.7:8080"
    assert eff.ntp_allow == ["10.9.0.0/16"]


def test_no_address_anywhere_is_a_config_error_with_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "compose: {internal_ip: ''}\n")
    with pytest.raises(ConfigError) as info:
        resolve(load_install_config(path), path, detected_ip=None)
    assert "compose.internal_ip is empty" in str(info.value)
    assert info.value.hint and "set compose.internal_ip" in info.value.hint


def test_errors_name_each_field_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "compose:\n  internal_ip: 10.0.0.300\n  registry_domain: 'no_dots'\n  colour: blue\n"
        "default:\n  registry_https_port: 70000\n  registry_ip: somewhere\n"
        "inventory:\n  all:\n    hosts:\n      node1:\n        ansible_host: 'bad host!'\n",
    )
    with pytest.raises(ConfigError) as info:
        load_install_config(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "compose.internal_ip: expected an IP address, got '10.0.0.300'" in msg
    assert "compose.registry_domain: expected a DNS name" in msg
    assert "compose.colour: unknown key" in msg
    assert "default.registry_https_port: expected a TCP port between 1 and 65535, got 70000" in msg
    assert "default.registry_ip: expected an IP address" in msg
    assert "inventory.all.hosts.node1.ansible_host: expected an IP address or host name" in msg


def test_an_ini_inventory_is_accepted_and_its_addresses_reach_chrony(tmp_path: Path) -> None:
    ini = (
        "[all]\nnode1 ansible_host=10.9.0.11 ip=10.9.0.11\nnode2 ansible_host='192.0.2.7'\nnode3\n"
        "[kube_control_plane]\nnode1\n[etcd]\nnode1\n[kube_node]\nnode2\nnode3\n"
    )
    path = write(
        tmp_path,
        "compose: {internal_ip: 10.9.0.5}\ninventory: |\n" + "".join(f"  {line}\n" for line in ini.splitlines()),
    )
    cfg = load_install_config(path)
    assert cfg.inventory == ini
    assert cfg.inventory_addresses() == ["10.9.0.11", "192.0.2.7"]
    eff = resolve(cfg, path, detected_ip=None, prefixlen=24)
    assert eff.ntp_allow == ["10.9.0.0/24", "192.0.2.7/32"]


def test_an_inventory_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "inventory: [node1, node2]\n")
    with pytest.raises(ConfigError) as info:
        load_install_config(path)
    assert "inventory: Input should be a valid dictionary" in str(info.value)


def test_ports_must_differ(tmp_path: Path) -> None:
    path = write(tmp_path, "compose: {nginx_http_port: 5000}\n")
    with pytest.raises(ConfigError) as info:
        load_install_config(path)
    assert "default.registry_push_port and compose.nginx_http_port are both 5000" in str(info.value)


def test_inventory_group_naming_an_undefined_host(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inventory:\n  all:\n    hosts: {node1: {ansible_host: 10.0.0.1}}\n"
        "    children:\n      etcd:\n        hosts: {node9: null}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_install_config(path)
    assert "all.children.etcd.hosts.node9 is not defined under all.hosts" in str(info.value)


def test_other_kubespray_variables_pass_through_but_must_be_names(tmp_path: Path) -> None:
    cfg = load_install_config(write(tmp_path, "kubespray: {dns_mode: coredns, kube_proxy_mode: ipvs}\n"))
    assert cfg.kubespray.model_extra == {"dns_mode": "coredns", "kube_proxy_mode": "ipvs"}
    with pytest.raises(ConfigError) as info:
        load_install_config(write(tmp_path, "kubespray: {'bad-name': 1}\n"))
    assert "'bad-name' is not a valid Ansible variable name" in str(info.value)


def test_secret_values_never_appear_in_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path, "inventory:\n  all:\n    hosts:\n      n1: {ansible_host: 10.0.0.1, ansible_port: s3cr3t-pass}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_install_config(path)
    assert "s3cr3t-pass" not in str(info.value)
    assert "inventory.all.hosts.n1.ansible_port" in str(info.value)


def test_cli_bad_config_exits_2_with_field_path(tmp_path: Path) -> None:
    path = write(tmp_path, "compose: {nginx_http_port: 0}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "kubeplay", "install", "-c", str(path), "--bundle", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "compose.nginx_http_port: expected a TCP port" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_primary_address_from_route_and_addr_json() -> None:
    routes = [
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0", "prefsrc": "192.0.2.2"},
        {"dst": "192.0.2.0/24", "dev": "eth0"},
    ]
    addrs = [
        {
            "ifname": "lo",
            "flags": ["LOOPBACK", "UP"],
            "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"}],
        },
        {
            "ifname": "eth1",
            "flags": ["UP"],
            "addr_info": [{"family": "inet", "local": "10.1.0.5", "prefixlen": 16, "scope": "global"}],
        },
        {
            "ifname": "eth0",
            "flags": ["UP"],
            "addr_info": [{"family": "inet", "local": "192.0.2.2", "prefixlen": 24, "scope": "global"}],
        },
    ]
    a = primary_address(routes, addrs)
    assert a is not None and (a.ip, a.prefixlen, a.dev) == ("192.0.2.2", 24, "eth0")
    # An air-gapped node often has no default route: the only global address is the answer...
    only = primary_address([], addrs[:2])
    assert only is not None and only.ip == "10.1.0.5"
    # ...and with several candidates kubeplay refuses to guess.
    assert primary_address([], addrs) is None


def test_os_release_names() -> None:
    deb = parse_os_release(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'
    )
    assert deb.family == "apt" and deb.release_names == ("12", "bookworm")
    rocky = parse_os_release('ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n')
    assert rocky.family == "rpm" and rocky.release == "9" and "9" in rocky.release_names
