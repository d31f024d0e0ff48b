"""Rendered configs compared with golden files (tests/unit/golden/bootstrap/; UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubeplay.bootstrap.chrony import find_layout, render_chrony_conf, render_chrony_dropin, upstream_servers
from kubeplay.bootstrap.nginx import choose_worker_user, render_nginx_conf, render_nginx_unit, settings_for
from kubeplay.bootstrap.osrepo import render_apt_source, render_yum_repo
from kubeplay.bootstrap.paths import HostPaths
from kubeplay.bootstrap.registry import render_registry_config, render_registry_unit

GOLDEN = Path(__file__).parent / "golden" / "bootstrap"
PATHS = HostPaths()
BUNDLE = Path("/opt/kubeplay-1.35.0-amd64")


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing; run with UPDATE_GOLDEN=1 once"
    assert text == path.read_text()


def nginx_settings(ipv6: bool) -> object:
    return settings_for(
        PATHS,
        served_dir=BUNDLE,
        http_port=8080,
        https_port=443,
        push_port=5000,
        registry_domain="kube.registry.local",
        registry_ip="10.0.0.5",
        worker_user="www-data",
        ipv6=ipv6,
    )


@pytest.mark.parametrize("ipv6", [True, False])
def test_nginx_conf(ipv6: bool) -> None:
    text = render_nginx_conf(nginx_settings(ipv6))  # type: ignore[arg-type]
    check(f"nginx{'' if ipv6 else '-ipv4'}.conf", text)
    # What the issue asks of it, independent of the golden file:
    assert "if ($request_method !~ ^(GET|HEAD)$) {\n            return 403;" in text
    assert "proxy_pass http://127.0.0.1:5000;" in text
    assert "location = /certs/rootCA.crt" in text
    assert "sites-enabled" not in text and "include" not in text, "nothing from the distro's config is pulled in"


def test_nginx_unit() -> None:
    check("kubeplay-nginx.service", render_nginx_unit("/usr/sbin/nginx", PATHS.nginx_conf, PATHS.state / "nginx.pid"))


def test_registry_conf_and_unit() -> None:
    check("registry.yml", render_registry_config(BUNDLE / "registry", 5000))
    check("kubeplay-registry.service", render_registry_unit("/usr/bin/docker-registry", PATHS.registry_conf))


def test_chrony_conf_serves_cluster_subnets() -> None:
    servers = upstream_servers(["10.0.0.5", "ntp.site.example"], {"10.0.0.5"})
    text = render_chrony_conf(["10.0.0.0/24", "10.1.0.9/32"], servers)
    check("chrony.conf", text)
    assert "allow 10.0.0.0/24\n" in text and "local stratum 10\n" in text
    assert "server 10.0.0.5" not in text, "the deploy node does not sync to itself"
    check("chrony-dropin.conf", render_chrony_dropin("/usr/sbin/chronyd", "$DAEMON_OPTS"))


def test_repo_entries(tmp_path: Path) -> None:
    repo = tmp_path / "repos/apt/debian/bookworm"
    (repo / "dists/bookworm").mkdir(parents=True)
    (repo / "dists/bookworm/Release").write_text("Suite: bookworm\nComponents: main contrib\n")
    text = render_apt_source(repo, Path("/etc/kubeplay/kubeplay-archive-keyring.gpg"))
    check("kubeplay.sources", text.replace(tmp_path.as_uri(), "file:///BUNDLE"))
    yum = render_yum_repo(
        tmp_path / "repos/rpm/rocky/9",
        Path("/etc/kubeplay/RPM-GPG-KEY-kubeplay"),
        [tmp_path / "repos/rpm/rocky/9/RPM-GPG-KEY-Rocky-9"],
    )
    check("kubeplay.repo", yum.replace(tmp_path.as_uri(), "file:///BUNDLE"))
    assert "repo_gpgcheck=1" in yum and "\ngpgcheck=1" in yum and "trusted=yes" not in text


def test_chrony_layout_detection(tmp_path: Path) -> None:
    deb = tmp_path / "etc/chrony/chrony.conf"
    deb.parent.mkdir(parents=True)
    deb.write_text("pool 2.debian.pool.ntp.org iburst\nconfdir /etc/chrony/conf.d\n")
    layout = find_layout((deb, tmp_path / "etc/chrony.conf"), tmp_path)
    assert layout is not None and layout.confdir == tmp_path / "etc/chrony/conf.d"
    rhel = tmp_path / "etc/chrony.conf"
    rhel.write_text("server time.example iburst\n")
    layout = find_layout((tmp_path / "nope", rhel), tmp_path)
    assert layout is not None and layout.confdir is None
    assert layout.fragment_path(Path("/etc/kubeplay/chrony.conf")) == Path("/etc/kubeplay/chrony.conf")


def test_worker_user_falls_back_to_root_when_bundle_is_private(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n")
    assert choose_worker_user([Path("/usr/share")], passwd) == "www-data"
    private = tmp_path / "pub" / "files"
    private.mkdir(parents=True)
    (tmp_path / "pub").chmod(0o700)
    assert choose_worker_user([Path("/usr/share"), private], passwd) == "root"
