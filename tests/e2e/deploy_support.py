"""A deploy side for lab nodes, shared by tests/e2e/test_deploy_lab.py and bench/deploy.py.

The deploy node is the lab-side network namespace on this machine: real nginx serves a bundle directory
(the signed Debian 12 OS repo built by kubeplay.osrepo from this machine's mirror, the CA, kubespray's
unmodified tree from ../shared) on the lab bridge address, and real chronyd serves time there. kubeplay's
deploy code runs here with ansible-playbook wrapped into that namespace, as it would run on node0.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubeplay.bootstrap.certs import make_ca
from kubeplay.bootstrap.chrony import render_chrony_conf
from kubeplay.lab.nodes import Lab
from kubeplay.lab.rootfs import RootfsSpec

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared"
CACHE = Path(os.environ.get("KUBEPLAY_TEST_CACHE", "/var/tmp/kubeplay-test-cache"))
DOMAIN = "kube.registry.local"
HTTP_PORT = 8080
# Debian's minimal install has every Priority: required package (tzdata among them), and the bundle's repo
# leaves those out as the baseline.
NODE_ROOTFS = RootfsSpec(variant="required")
# What lets a lab node get furthest into kubespray without touching the host: CAP_NET_ADMIN, and (through
# nspawn's environment) /proc/sys/net writable. Both reach only the node's own network namespace.
NSPAWN_ARGS = ("--capability=CAP_NET_ADMIN",)
NSPAWN_ENV = {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}


class Unavailable(Exception):
    """A prerequisite (../shared, the Debian mirror) is missing; the caller skips with this reason."""


def kubespray_archive() -> Path:
    archives = sorted((SHARED / "upstream" / "kubespray").glob("kubespray-v*.tar.gz"))
    if not archives:
        raise Unavailable("../shared absent: no kubespray release to deploy with")
    return archives[-1]


def extract_kubespray(archive: Path, dest: Path) -> Path:
    """The release unpacked (unmodified) into dest/kubespray."""
    staging = dest / ".kubespray-unpack"
    with tarfile.open(archive) as tar:
        tar.extractall(staging, filter="data")
    top = next(staging.iterdir())
    target = dest / "kubespray"
    top.rename(target)
    shutil.rmtree(staging)
    return target


def default_kube_version(kubespray: Path) -> str:
    """kubespray's own default: the newest kubelet it has a checksum for (its kube_version default)."""
    checksums = yaml.safe_load((kubespray / "roles/kubespray_defaults/vars/main/checksums.yml").read_text())
    return str(next(iter(checksums["kubelet_checksums"]["amd64"])))


def build_bundle(dest: Path) -> Path:
    """A bundle directory: signed Debian 12 amd64 repo (kubeplay's default package list), kubespray, manifest."""
    from kubeplay.config.bundle import BundleSpec
    from kubeplay.console import Output
    from kubeplay.fetch.http import Downloader
    from kubeplay.osrepo import build_os_repos
    from kubeplay.osrepo.host_sources import host_sources_for

    if not [s for s in host_sources_for("bookworm") if "bookworm" in s.suites]:
        raise Unavailable("this machine's apt sources have no Debian bookworm mirror")
    archive = kubespray_archive()
    dest.mkdir(parents=True, exist_ok=True)
    kubespray = extract_kubespray(archive, dest)
    spec = BundleSpec.model_validate(
        {
            "kubespray": {"version": "v2.31.0", "source": str(archive)},
            "os": [{"distro": "debian", "release": "12", "arches": ["amd64"]}],
        }
    )
    build_os_repos(
        spec,
        dest,
        Downloader(out=Output(quiet=True), progress=False),
        out=Output(quiet=True),
        cache_dir=CACHE / "osrepo",
    )
    manifest = {
        "kube_version": default_kube_version(kubespray),
        "arches": ["amd64"],
        "kubespray": {"path": "kubespray"},
    }
    (dest / "kubeplay.json").write_text(json.dumps(manifest))
    return dest


@dataclass
class DeploySide:
    ip: str
    bundle: Path
    ca: Path
    netns: str
    workdir: Path


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _wait_http(lab: Lab, url: str, deadline: float = 20) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        probe = lab.lab_side(["curl", "-fsS", "-o", "/dev/null", url])
        if subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0:
            return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {deadline}s")


@contextmanager
def serving(lab: Lab, bundle: Path, workdir: Path) -> Iterator[DeploySide]:
    """nginx (files, repos, CA) and chronyd on the lab bridge address, stopped by PID afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    ip = lab.record.bridge_ip
    ca = workdir / "rootCA.crt"
    ca.write_bytes(make_ca().cert_pem)
    nginx_conf = workdir / "nginx.conf"
    nginx_conf.write_text(
        f"""
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
user root;
events {{ worker_connections 256; }}
http {{
  access_log {workdir}/nginx-access.log;
  client_body_temp_path {workdir}/body; proxy_temp_path {workdir}/proxy; fastcgi_temp_path {workdir}/fcgi;
  uwsgi_temp_path {workdir}/uwsgi; scgi_temp_path {workdir}/scgi;
  server {{
    listen {ip}:{HTTP_PORT};
    root {bundle};
    location /files/ {{ autoindex on; }}
    location /repos/ {{ autoindex on; }}
    location = /certs/rootCA.crt {{ alias {ca}; }}
    location / {{ return 404; }}
  }}
}}
"""
    )
    chrony_conf = workdir / "chrony.conf"
    chrony_conf.write_text(
        render_chrony_conf([lab.record.subnet], [])
        + f"\npidfile {workdir}/chronyd.pid\ndriftfile {workdir}/chrony.drift\ncmdport 0\nbindaddress {ip}\n"
    )
    chronyd = shutil.which("chronyd") or "/usr/sbin/chronyd"
    procs = [
        _start(lab.lab_side(["nginx", "-c", str(nginx_conf), "-g", "daemon off;"]), workdir / "nginx.out"),
        _start(lab.lab_side([chronyd, "-d", "-x", "-f", str(chrony_conf)]), workdir / "chronyd.out"),
    ]
    try:
        _wait_http(lab, f"http://{ip}:{HTTP_PORT}/certs/rootCA.crt")
        yield DeploySide(ip=ip, bundle=bundle, ca=ca, netns=lab.netns, workdir=workdir)
    finally:
        for proc in procs:
            _stop(proc)


def up_lab(nodes: int, **kwargs: Any) -> Lab:
    """Lab.up with the deploy tests' rootfs, nspawn options and nspawn environment (kept for power_on)."""
    return Lab.up(nodes, spec=NODE_ROOTFS, nspawn_args=NSPAWN_ARGS, nspawn_env=NSPAWN_ENV, **kwargs)


def stop_node(lab: Lab, name: str) -> None:
    """Shut node `name` down cleanly, as a power-off would; its disk stays."""
    lab.power_off(name)


def power_off_node(lab: Lab, name: str) -> None:
    """Cut node `name`'s power: every process in it dies at once, mid-write; its disk stays as the kill left it."""
    lab.power_off(name, cut=True)


def start_node(lab: Lab, name: str, timeout: float = 120) -> None:
    """Boot node `name` again from its disk, with the options the lab was brought up with; return once sshd answers."""
    lab.power_on(name, timeout=timeout)


def write_config(
    side: DeploySide,
    lab: Lab,
    nodes: list[str],
    path: Path,
    extra: dict[str, Any] | None = None,
    host_vars: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """config.yaml in the original kubeplay's shape, for these lab nodes (first is control plane and etcd).

    The lab key is the default login; `host_vars` override it per node (a password, another key).
    """
    by_name = {n.name: n for n in lab.nodes}
    hosts = {n: {"ansible_host": by_name[n].ip, **(host_vars or {}).get(n, {})} for n in nodes}
    key = {"ansible_ssh_private_key_file": lab.record.key}
    for n in nodes:
        if "ansible_ssh_pass" not in hosts[n]:
            hosts[n] = {**key, **hosts[n]}
    config = {
        "compose": {"internal_ip": side.ip, "nginx_http_port": HTTP_PORT, "registry_domain": DOMAIN},
        # Lab nodes are named as in the inventory already; renaming goes through systemd-hostnamed, which a
        # container on this cgroup-v1 host (no systemd as PID 1) sometimes fails to start (219/CGROUP).
        "kubespray": {"kube_network_plugin": "calico", "override_system_hostname": False, **(extra or {})},
        "inventory": {
            "all": {
                "vars": {"ansible_user": "root"},
                "hosts": hosts,
                "children": {
                    "kube_control_plane": {"hosts": {nodes[0]: None}},
                    "etcd": {"hosts": {nodes[0]: None}},
                    "kube_node": {"hosts": {n: None for n in nodes}},
                    "k8s_cluster": {"children": {"kube_control_plane": None, "kube_node": None}},
                },
            }
        },
        "default": {"ntp_server": [side.ip], "registry_ip": side.ip},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
