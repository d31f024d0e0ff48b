"""Many nodes pulling from one deploy node at once: the registry path against static files, same nginx.

The deploy node is served as `kubeplay install --no-systemd` serves it (its certs, registry, nginx,
services and health steps under a temporary root, real nginx and the CNCF distribution registry on
loopback). Each client is its own process and behaves like containerd: every image's manifest by tag
(TLS by the registry domain, the bundle's CA), then every blob, each digest checked before the content
counts, 5xx and broken connections retried with back-off; then every file over HTTP.
The peer (the limit): the same clients fetching the same blob bytes as plain static files (hard links
of the registry's blob files under files/) from the same nginx. A second reference says what TLS costs
on this machine: the same static files over TLS (same certificate, protocols and worker count) from a
second nginx started by the bench, since the deploy node's nginx serves files over plain HTTP only.

At 5 and 20 clients (--clients), each side in its own phase, all clients at once, it prints: aggregate
throughput of each side and their ratio (registry / static), p50/p99 latency of manifest requests,
errors (any response other than 200, broken connections, gave-up items; digest mismatches are refused
and counted apart) and the peak RSS of the registry and of nginx (master + workers, sampled every
100 ms). Clients and servers share this machine's cores, so the numbers say where the CPU goes, not what
a network would carry. Never asserted anywhere.

    .venv/bin/python bench/load.py [--clients 5,20] [--images 6] [--layers 4] [--layer-mib 8] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.bootstrap_fixture import free_ports  # noqa: E402
from tests.serve_load import PullReport, Served, rss, run_client, served_node  # noqa: E402

MIB = 1 << 20


def phase(node: Served, clients: int, what: str, rss_of: Served | None = None) -> tuple[list[PullReport], int, int]:
    """All `clients` at once doing `what` (see run_client): (reports, peak registry RSS, peak nginx RSS)."""
    registry_pid = (rss_of or node).child("kubeplay-registry").proc.pid
    nginx_pid = (rss_of or node).child("kubeplay-nginx").proc.pid
    peaks = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peaks[0] = max(peaks[0], rss(registry_pid))
            peaks[1] = max(peaks[1], rss(nginx_pid))

    sampler = threading.Thread(target=sample, daemon=True)
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        pool.map(abs, range(clients))  # every worker started and imported before the clock runs
        sampler.start()
        args = [(node.target, f"kubeplay-load-{what}-{clients}-{n}", what) for n in range(clients)]
        reports = pool.starmap(run_client, args, chunksize=1)
    done.set()
    sampler.join()
    return reports, peaks[0], peaks[1]


@contextmanager
def static_tls_nginx(node: Served, workdir: Path) -> Iterator[str]:
    """A second nginx serving the bundle's files/ over TLS like the deploy node's registry front; its URL."""
    port = free_ports(1)[0]
    paths = node.ctx.paths
    conf = workdir / "static-tls-nginx.conf"
    conf.write_text(
        f"""user root;
worker_processes auto;
pid {workdir}/static-tls-nginx.pid;
error_log {workdir}/static-tls-error.log warn;
events {{ worker_connections 1024; }}
http {{
    default_type application/octet-stream;
    access_log {workdir}/static-tls-access.log;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {node.target.domain};
        ssl_certificate {paths.server_cert};
        ssl_certificate_key {paths.server_key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_prefer_server_ciphers off;
        root {node.bundle};
        location /files/ {{ }}
    }}
}}
"""
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([nginx, "-e", "stderr", "-c", str(conf), "-g", "daemon off;"], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"https://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def throughput(reports: list[PullReport]) -> float:
    wall = max(r.ended for r in reports) - min(r.started for r in reports)
    return sum(r.accepted_bytes for r in reports) / wall


def errors(reports: list[PullReport]) -> int:
    bad = sum(n for r in reports for status, n in r.responses.items() if status != 200)
    return bad + sum(r.connection_errors + len(r.failed) for r in reports)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="5,20", help="client counts, comma-separated")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--layers", type=int, default=4, help="layers per image (the first is shared by all)")
    ap.add_argument("--layer-mib", type=float, default=8.0)
    ap.add_argument("--workdir", type=Path, help="where the bundle is written (default: the temporary directory)")
    args = ap.parse_args()
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()) or not Path("/usr/bin/docker-registry").exists():
        print("load bench: nginx or docker-registry not installed; skipped", file=sys.stderr)
        return 0
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="kubeplay-bench-load-", dir=args.workdir) as tmp:
        layer = int(args.layer_mib * MIB)
        with (
            served_node(Path(tmp), args.images, args.layers, layer, static_copies=True) as node,
            static_tls_nginx(node, Path(tmp)) as static_tls_url,
        ):
            per_client = len(node.target.static_blobs) * layer / MIB
            print(
                f"load: {len(node.target.images)} images x {args.layers} layers x {args.layer_mib:g} MiB "
                f"(~{per_client:.0f} MiB per client) + {len(node.target.files)} files; clients {counts}",
                flush=True,
            )
            for clients in counts:
                reg, reg_rss, reg_nginx = phase(node, clients, "registry")
                static, _, static_nginx = phase(node, clients, "static")
                tls_node = Served(node.ctx, node.bundle, dataclasses.replace(node.target, https=static_tls_url))
                static_tls, _, _ = phase(tls_node, clients, "static-tls", rss_of=node)
                refused = sum(len(r.refused) for r in reg + static + static_tls)
                latencies = [t for r in reg for t in r.manifest_latency]
                rows.append(
                    {
                        "clients": clients,
                        "registry_mib_s": throughput(reg) / MIB,
                        "static_mib_s": throughput(static) / MIB,
                        "static_tls_mib_s": throughput(static_tls) / MIB,
                        "p50_ms": statistics.median(latencies) * 1000,
                        "p99_ms": percentile(latencies, 0.99) * 1000,
                        "errors": errors(reg),
                        "static_errors": errors(static) + errors(static_tls),
                        "refused": refused,
                        "registry_rss": reg_rss / MIB,
                        "nginx_rss": max(reg_nginx, static_nginx) / MIB,
                    }
                )
                row = rows[-1]
                print(
                    f"  {clients:3d} clients: registry {row['registry_mib_s']:7.0f} MiB/s, static {row['static_mib_s']:7.0f}"
                    f" MiB/s, ratio {row['registry_mib_s'] / row['static_mib_s']:.2f}x (static over TLS "
                    f"{row['static_tls_mib_s']:.0f} MiB/s: registry/that {row['registry_mib_s'] / row['static_tls_mib_s']:.2f}x)"
                    f"; manifest p50 "
                    f"{row['p50_ms']:.1f} ms p99 {row['p99_ms']:.1f} ms; errors {row['errors']} (static "
                    f"{row['static_errors']}), digest mismatches {refused}; peak RSS registry "
                    f"{row['registry_rss']:.0f} MiB, nginx {row['nginx_rss']:.0f} MiB",
                    flush=True,
                )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(
            "registry path vs static files (same nginx, same clients): "
            + ", ".join(f"{r['registry_mib_s'] / r['static_mib_s']:.2f}x at {r['clients']}" for r in rows)
            + f"; memory {first['clients']} -> {last['clients']} clients: registry {first['registry_rss']:.0f} -> "
            f"{last['registry_rss']:.0f} MiB, nginx {first['nginx_rss']:.0f} -> {last['nginx_rss']:.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
