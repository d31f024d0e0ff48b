"""Health check of the deploy node's services, as a node will use them, retried until a deadline.

TLS `GET /v2/` by registry domain with the kubeplay CA (no insecure flags), one manifest fetched by
digest and re-hashed, one file fetched over HTTP and compared with its digest, and the CA as served.
"""

from __future__ import annotations

import hashlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from kubeplay.bootstrap.registry import TaggedImage
from kubeplay.errors import StepFailed

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


@dataclass(frozen=True)
class HealthTarget:
    connect_ip: str
    registry_domain: str
    https_port: int
    http_port: int
    ca_file: Path
    image: TaggedImage | None
    file: tuple[str, str] | None  # (bundle-relative path, sha256)


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def check_once(t: HealthTarget, timeout: float = 5.0) -> list[str]:
    """One pass over every check; returns what passed, raises a descriptive error on the first failure."""
    passed: list[str] = []
    ctx = ssl.create_default_context(cafile=str(t.ca_file))
    base = f"https://{_host(t.connect_ip)}:{t.https_port}"
    # Connect to the IP but present and verify the registry domain, as a node resolving it via /etc/hosts would.
    ext = {"sni_hostname": t.registry_domain}
    headers = {"Host": f"{t.registry_domain}:{t.https_port}"}
    with httpx.Client(verify=ctx, timeout=timeout, trust_env=False) as client:
        r = client.get(f"{base}/v2/", headers=headers, extensions=ext)
        if r.status_code != 200:
            raise RuntimeError(f"GET https://{t.registry_domain}:{t.https_port}/v2/ answered {r.status_code}")
        passed.append("registry /v2/ over TLS")
        if t.image:
            url = f"{base}/v2/{t.image.repository}/manifests/{t.image.digest}"
            r = client.get(url, headers={**headers, "Accept": MANIFEST_ACCEPT}, extensions=ext)
            got = "sha256:" + hashlib.sha256(r.content).hexdigest()
            if r.status_code != 200 or got != t.image.digest:
                raise RuntimeError(
                    f"manifest {t.image.repository}@{t.image.digest}: status {r.status_code}, digest {got}"
                )
            passed.append(f"manifest {t.image.repository}:{t.image.tag}")
    http = f"http://{_host(t.connect_ip)}:{t.http_port}"
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        r = client.get(f"{http}/certs/rootCA.crt")
        if r.status_code != 200 or r.content.strip() != t.ca_file.read_bytes().strip():
            raise RuntimeError(f"{http}/certs/rootCA.crt answered {r.status_code} with other content")
        passed.append("CA served over HTTP")
        if t.file:
            rel, digest = t.file
            h = hashlib.sha256()
            with client.stream("GET", f"{http}/{rel}") as resp:
                if resp.status_code != 200:
                    raise RuntimeError(f"GET {http}/{rel} answered {resp.status_code}")
                for chunk in resp.iter_bytes():
                    h.update(chunk)
            if h.hexdigest() != digest:
                raise RuntimeError(f"{http}/{rel}: sha256 {h.hexdigest()} does not match {digest}")
            passed.append(f"file {rel}")
    return passed


def wait_healthy(
    t: HealthTarget,
    deadline_s: float = 60.0,
    on_retry: Callable[[str], None] | None = None,
    alive: Callable[[], None] | None = None,
) -> list[str]:
    """Retry `check_once` with backoff until it passes or the deadline passes (StepFailed with the last error)."""
    end = time.monotonic() + deadline_s
    delay = 0.05
    last = ""
    while True:
        if alive:
            alive()
        try:
            return check_once(t)
        except (httpx.HTTPError, RuntimeError, OSError) as exc:
            last = str(exc) or type(exc).__name__
        if time.monotonic() + delay > end:
            raise StepFailed(
                f"health check failed after {deadline_s:.0f}s: {last}",
                hint="see `kubeplay status` and the service logs (journalctl -u kubeplay-nginx -u kubeplay-registry)",
            )
        if on_retry:
            on_retry(last)
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
