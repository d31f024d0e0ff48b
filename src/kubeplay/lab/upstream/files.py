"""Upstream file hosts: real nginx serving `<root>/<host>/<path>` over TLS, and the fault server beside it."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import sys
import urllib.parse
from dataclasses import asdict
from pathlib import Path

import httpx

from kubeplay.errors import BadInput
from kubeplay.lab.upstream.faults import FaultServerConfig
from kubeplay.lab.upstream.pki import TestPKI
from kubeplay.lab.upstream.process import ServerProcess, require_binary, start_on_free_port
from kubeplay.state import atomic_write

NGINX_BINARY = "/usr/sbin/nginx"
NGINX_PACKAGE = "nginx-light"


def url_to_relpath(url: str) -> str:
    """`https://dl.k8s.io/release/v1/bin/kubeadm` -> `dl.k8s.io/release/v1/bin/kubeadm` (kubespray's files_repo layout)."""
    parts = urllib.parse.urlsplit(url)
    path = urllib.parse.unquote(parts.path).lstrip("/")
    if parts.scheme not in ("http", "https") or not parts.hostname or not path or path.endswith("/"):
        raise BadInput(f"cannot serve {url!r}: expected http(s)://<host>/<path to a file>")
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise BadInput(f"cannot serve {url!r}: the path has empty, '.' or '..' segments")
    return f"{parts.hostname}/{path}"


def place_file(root: Path, url: str, data: bytes) -> str:
    """Write `data` where nginx serves `url`; return its sha256 hex."""
    atomic_write(root / url_to_relpath(url), data)
    return hashlib.sha256(data).hexdigest()


def place_file_from(root: Path, url: str, source: Path) -> str:
    """Copy a (possibly large) file to where nginx serves `url`, streaming; return its sha256 hex."""
    target = root / url_to_relpath(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    digest = hashlib.sha256()
    with source.open("rb") as src, tmp.open("wb") as dst:
        while chunk := src.read(1024 * 1024):
            digest.update(chunk)
            dst.write(chunk)
    os.replace(tmp, target)
    return digest.hexdigest()


def render_nginx_conf(workdir: Path, root: Path, port: int, pki: TestPKI) -> str:
    """nginx.conf for one TLS static server on 127.0.0.1:port, every path under `workdir`."""
    temp = workdir / "temp"
    # As root, nginx would drop workers to `nobody`, who cannot read a 0700 pytest tmp dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}daemon off;
worker_processes 2;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    server_tokens off;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {pki.server_cert};
        ssl_certificate_key {pki.server_key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {root};
        location = /_health {{ return 200 "ok\\n"; }}
        location / {{ try_files $uri =404; }}
    }}
}}
"""


def https_answers(url: str, ca_cert: Path) -> bool:
    try:
        response = httpx.get(url, verify=ssl.create_default_context(cafile=str(ca_cert)), timeout=2.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def start_nginx(workdir: Path, root: Path, pki: TestPKI) -> ServerProcess:
    """Start nginx (foreground, our own child) on a free loopback port serving `root`."""
    binary = require_binary(NGINX_BINARY, NGINX_PACKAGE)
    (workdir / "temp").mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    error_log = workdir / "error.log"

    def prepare(port: int) -> list[str]:
        atomic_write(conf, render_nginx_conf(workdir, root, port, pki).encode())
        return [binary, "-p", f"{workdir}/", "-e", str(error_log), "-c", str(conf)]

    def probe(port: int) -> bool:
        return https_answers(f"https://127.0.0.1:{port}/_health", pki.ca_cert)

    return start_on_free_port("nginx", prepare, workdir / "nginx.out", probe, extra_log=error_log)


def start_python_server(
    name: str, module: str, config: dict[str, object], workdir: Path, ca_cert: Path
) -> ServerProcess:
    """Run one of the simulator's own Python servers (`python -m <module> config.json`) on a free port."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{name}.json"

    def prepare(port: int) -> list[str]:
        atomic_write(config_path, json.dumps({**config, "port": port}).encode(), mode=0o600)
        return [sys.executable, "-m", module, str(config_path)]

    def probe(port: int) -> bool:
        return https_answers(f"https://127.0.0.1:{port}/_health", ca_cert)

    return start_on_free_port(name, prepare, workdir / f"{name}.log", probe)


def start_fault_server(workdir: Path, root: Path, pki: TestPKI, registry_url: str) -> ServerProcess:
    cfg = FaultServerConfig(
        port=0,
        cert=str(pki.server_cert),
        key=str(pki.server_key),
        root=str(root),
        registry=registry_url,
        ca=str(pki.ca_cert),
    )
    return start_python_server("faults", "kubeplay.lab.upstream.faults", asdict(cfg), workdir, pki.ca_cert)
