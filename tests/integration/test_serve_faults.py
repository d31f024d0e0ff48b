"""Faults under load on the deploy node: while clients pull every image (TLS by domain through nginx to the
distribution registry, as `kubeplay install --no-systemd` serves them) and every file, the registry is
SIGKILLed once and nginx reloaded once. The supervisor starts the registry again within 2 s; clients retry
as containerd does and complete; no client accepts content whose digest does not match; nginx's access log
has a line for every response a client got; `kubeplay status` shows the restart."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bootstrap_fixture import NEEDS_REGISTRY_AND_NGINX
from tests.conftest import run_kubeplay
from tests.serve_load import PullReport, access_log_counts, run_client, served_node

from kubeplay.bootstrap.registry import blob_path, manifest_children
from kubeplay.bootstrap.steps import foreground

pytestmark = [
    pytest.mark.integration,
    NEEDS_REGISTRY_AND_NGINX,
]
CLIENTS = 6
MAX_ROUNDS = 40  # bounded: clients pull again until both faults are done, never more than this


def registry_answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=0.5, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def test_registry_killed_and_nginx_reloaded_while_clients_pull(tmp_path: Path) -> None:
    with served_node(tmp_path, images=4, layers_per_image=3, layer_size=2 << 20) as node:
        stop_supervising = threading.Event()
        supervisor = threading.Thread(target=foreground().supervise, args=(stop_supervising,), daemon=True)
        supervisor.start()
        faults_done = threading.Event()
        pulling = threading.Barrier(CLIENTS + 1)

        def client(n: int) -> list[PullReport]:
            reports = [run_client(node.target, f"kubeplay-fault-client-{n}", "registry")]
            pulling.wait(timeout=120)
            while not faults_done.is_set() and len(reports) < MAX_ROUNDS:
                reports.append(run_client(node.target, f"kubeplay-fault-client-{n}", "registry"))
            reports.append(run_client(node.target, f"kubeplay-fault-client-{n}", "registry"))  # one after both
            return reports

        try:
            with ThreadPoolExecutor(CLIENTS) as pool:
                futures = [pool.submit(client, n) for n in range(CLIENTS)]
                pulling.wait(timeout=120)
                registry = node.child("kubeplay-registry")
                nginx = node.child("kubeplay-nginx")
                first_pid = registry.proc.pid
                os.kill(first_pid, signal.SIGKILL)
                killed_at = time.monotonic()
                push_port = node.ctx.cfg.registry_push_port
                while not (registry.proc.pid != first_pid and registry_answers(push_port)):
                    assert time.monotonic() - killed_at < 2.0, "the registry was not serving again within 2 s"
                    time.sleep(0.02)
                back_after = time.monotonic() - killed_at
                time.sleep(0.3)
                os.kill(nginx.proc.pid, signal.SIGHUP)  # what `nginx -s reload` sends the master
                time.sleep(0.5)
                faults_done.set()
                rounds = [f.result(timeout=600) for f in futures]
        finally:
            stop_supervising.set()
            supervisor.join(timeout=10)

        assert back_after < 2.0
        assert registry.proc.pid != first_pid and nginx.proc.poll() is None
        storage = node.bundle / "registry"
        expected = sum(  # what one complete round accepts: every image's manifest and blobs, then every file
            blob_path(storage, digest).stat().st_size
            for _, _, manifest in node.target.images
            for digest in [manifest, *manifest_children(storage, manifest)[2]]
        ) + sum((node.bundle / path).stat().st_size for path, _ in node.target.files)
        agents_seen: dict[str, dict[int, int]] = {}
        for reports in rounds:
            for report in reports:
                assert report.refused == [], f"{report.agent} was sent content with a wrong digest"
                assert report.failed == [], f"{report.agent}: {report.failed}"
                assert report.accepted_bytes == expected, report.agent
                per = agents_seen.setdefault(report.agent, {})
                for status, count in report.responses.items():
                    per[status] = per.get(status, 0) + count
        assert all(len(r) >= 2 for r in rounds)
        retried = sum(r.retries for reports in rounds for r in reports)
        assert retried > 0, "the registry was killed while clients pulled: some request should have been retried"

        # Every response a client got has its line in nginx's access log (5xx included), and no more.
        logged = access_log_counts(node.log_dir / "nginx-access.log", "kubeplay-fault-client-")
        for agent, per in agents_seen.items():
            assert logged.get(agent) == per, (agent, logged.get(agent), per)

        state = node.ctx.paths.state
        done = run_kubeplay("status", "--state-dir", str(state), "--no-probe", "--json", timeout=60)
        assert done.returncode == 0, done.stderr
        services = json.loads(done.stdout)["services"]
        assert services["kubeplay-registry"]["restarts"] == 1
        assert services["kubeplay-registry"]["last_exit"] == -signal.SIGKILL
        assert services["kubeplay-registry"]["pid"] == registry.proc.pid
        assert services["kubeplay-registry"]["state"] == "running"
        assert services["kubeplay-nginx"]["restarts"] == 0  # a reload is no restart
        text = run_kubeplay("status", "--state-dir", str(state), "--no-probe", timeout=60)
        assert "service kubeplay-registry: running" in text.stderr and "restarted 1 time(s)" in text.stderr


def test_blob_content_comes_from_nginx_only_after_the_registry_checked_the_repository(tmp_path: Path) -> None:
    """GET /v2/<repo>/blobs/<digest> is served by nginx from the registry's storage (sendfile, ranges) once a
    HEAD to the registry says the repository has that blob; anything else is the registry's own answer."""
    import ssl

    with served_node(tmp_path, images=2, layers_per_image=2, layer_size=1 << 20) as node:
        storage = node.bundle / "registry"
        (repo0, _, manifest0), (_, _, manifest1) = node.target.images[:2]
        own0 = set(manifest_children(storage, manifest0)[2])
        foreign = next(b for b in manifest_children(storage, manifest1)[2] if b not in own0)
        blob = sorted(own0)[0]
        verify = ssl.create_default_context(cafile=node.target.ca_file)
        ext = {"sni_hostname": node.target.domain}
        headers = {"Host": node.target.domain}
        with httpx.Client(verify=verify, timeout=10, trust_env=False) as c:

            def get(repo: str, digest: str, **extra: str) -> httpx.Response:
                url = f"{node.target.https}/v2/{repo}/blobs/{digest}"
                return c.get(url, headers={**headers, **extra}, extensions=ext)

            r = get(repo0, blob)
            assert r.status_code == 200 and r.content == blob_path(storage, blob).read_bytes()
            assert r.headers["docker-content-digest"] == blob
            assert r.headers.get("accept-ranges") == "bytes", "served by nginx from the store"
            assert not r.headers["etag"].strip('"').startswith("sha256:"), "the registry's ETag: not from the store"
            part = get(repo0, blob, Range="bytes=10-19")
            assert part.status_code == 206 and part.content == blob_path(storage, blob).read_bytes()[10:20]

            # In the store, but not in this repository: the registry's 404, as without nginx in front.
            r = get(repo0, foreign)
            assert r.status_code == 404 and "BLOB_UNKNOWN" in r.text
            assert get(repo0, "sha256:" + "0" * 64).status_code == 404

            # Registry down (no supervisor here): nothing is served without the check.
            registry = node.child("kubeplay-registry")
            registry.proc.kill()
            registry.proc.wait(timeout=10)
            r = get(repo0, blob)
            assert r.status_code == 502 and r.content != blob_path(storage, blob).read_bytes()
