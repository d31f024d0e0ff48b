"""Many nodes pulling from one deploy node at once: the served node (`kubeplay install --no-systemd`'s
serving steps under a temp root, on loopback) and a puller that behaves like containerd (manifest by tag,
then every blob, each digest checked before the content is accepted, idempotent GETs retried with
back-off). Shared by tests/integration/test_serve_faults.py and bench/load.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from kubeplay.bootstrap.health import MANIFEST_ACCEPT
from kubeplay.bootstrap.registry import manifest_children, tagged_images
from kubeplay.bootstrap.steps import STEPS, foreground, run_install
from tests.bootstrap_fixture import free_ports, make_bundle, make_context

DOMAIN = "kube.registry.local"
SERVING = tuple(s for s in STEPS if s.name in ("serve", "certs", "registry", "nginx", "services", "health"))


@dataclass(frozen=True)
class Target:
    """What a client needs: where to connect, the name to ask for, the CA, and what to pull."""

    https: str  # https://127.0.0.1:PORT (connect here, SNI and Host = domain)
    http: str  # http://127.0.0.1:PORT (files)
    domain: str
    ca_file: str
    images: tuple[tuple[str, str, str], ...]  # (repository, tag, manifest digest)
    files: tuple[tuple[str, str], ...]  # (path under the files server, sha256 hex)
    static_blobs: tuple[tuple[str, str], ...] = ()  # (path under the files server, sha256 hex): the peer


@dataclass
class Served:
    ctx: Any
    bundle: Path
    target: Target

    @property
    def log_dir(self) -> Path:
        return Path(self.ctx.paths.logs)

    def child(self, name: str) -> Any:
        return next(s for s in foreground().services if s.name == name)


@contextmanager
def served_node(
    tmp_path: Path, images: int, layers_per_image: int, layer_size: int, static_copies: bool = False
) -> Iterator[Served]:
    """A bundle served by the real registry and nginx as install's serving steps start them (--no-systemd).

    static_copies: hard links of every blob under files/static/<hex> (the same bytes as plain static files)."""
    bundle = make_bundle(tmp_path, images=images, layers_per_image=layers_per_image, layer_size=layer_size)
    http, https, push = free_ports(3)
    ctx = make_context(tmp_path, bundle, ports=(http, https, push), domain=DOMAIN)
    try:
        run_install(ctx, steps=SERVING)  # type: ignore[arg-type]
        storage = bundle / "registry"
        found = []
        static = []
        for img in tagged_images(storage):
            found.append((img.repository, img.tag, img.digest))
            if static_copies:
                for blob in manifest_children(storage, img.digest)[2]:
                    hexd = blob.split(":", 1)[1]
                    link = bundle / "files" / "static" / hexd
                    if not link.exists():
                        link.parent.mkdir(parents=True, exist_ok=True)
                        src = storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
                        os.link(src, link)
                    static.append((f"files/static/{hexd}", hexd))
        manifest = json.loads((bundle / "kubeplay.json").read_text())
        files = tuple((f["path"], f["sha256"]) for f in manifest["files"])
        target = Target(
            https=f"https://127.0.0.1:{https}",
            http=f"http://127.0.0.1:{http}",
            domain=DOMAIN,
            ca_file=str(ctx.paths.ca_cert),  # type: ignore[attr-defined]
            images=tuple(found),
            files=files,
            static_blobs=tuple(static),
        )
        yield Served(ctx, bundle, target)
    finally:
        foreground().stop()


@dataclass
class PullReport:
    """One client's account: every HTTP response it got (status counts), bytes accepted, retries, the
    latency of each manifest request, and anything it refused (digest mismatch: never accepted)."""

    agent: str
    responses: dict[int, int] = field(default_factory=dict)
    accepted_bytes: int = 0
    retries: int = 0
    connection_errors: int = 0
    manifest_latency: list[float] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    started: float = 0.0  # wall clock (time.time()), comparable across client processes
    ended: float = 0.0


class Puller:
    """A containerd-like client: a digest is checked before content counts; 5xx and broken connections
    are retried (up to `tries`, exponential back-off from 0.1 s), other statuses fail the item."""

    def __init__(self, target: Target, agent: str, tries: int = 8) -> None:
        self.target = target
        self.report = PullReport(agent)
        self.tries = tries
        verify = ssl.create_default_context(cafile=target.ca_file)
        self.tls = httpx.Client(verify=verify, timeout=60, trust_env=False, headers={"User-Agent": agent})
        self.plain = httpx.Client(timeout=60, trust_env=False, headers={"User-Agent": agent})

    def close(self) -> None:
        self.tls.close()
        self.plain.close()

    def fetch(self, url: str, digest: str, headers: dict[str, str] | None = None, tls: bool = True) -> bytes | None:
        """GET `url` and return its body once its sha256 is `digest` (sha256:<hex> or hex); None if it failed."""
        want = digest.split(":", 1)[-1]
        client = self.tls if tls else self.plain
        ext = {"sni_hostname": self.target.domain} if tls else {}
        headers = {**({"Host": self.target.domain} if tls else {}), **(headers or {})}
        delay = 0.1
        for attempt in range(self.tries):
            if attempt:
                self.report.retries += 1
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            try:
                hasher = hashlib.sha256()
                keep = bytearray()  # only small bodies (manifests) are kept; blobs are hashed and dropped
                received = 0
                with client.stream("GET", url, headers=headers, extensions=ext) as r:
                    self.report.responses[r.status_code] = self.report.responses.get(r.status_code, 0) + 1
                    if r.status_code >= 500 or r.status_code == 429:
                        r.read()
                        continue
                    if r.status_code != 200:
                        self.report.failed.append(f"{r.status_code} {url}")
                        return None
                    for chunk in r.iter_bytes(1 << 20):
                        hasher.update(chunk)
                        received += len(chunk)
                        if len(keep) < (1 << 20):
                            keep += chunk
                if hasher.hexdigest() != want:
                    self.report.refused.append(url)  # a wrong digest is never accepted: fetched again
                    continue
                self.report.accepted_bytes += received
                return bytes(keep)
            except httpx.TransportError:
                self.report.connection_errors += 1
        self.report.failed.append(f"gave up: {url}")
        return None

    def pull_images(self) -> None:
        for repository, tag, digest in self.target.images:
            base = f"{self.target.https}/v2/{repository}"
            started = time.monotonic()
            body = self.fetch(f"{base}/manifests/{tag}", digest, {"Accept": MANIFEST_ACCEPT})
            self.report.manifest_latency.append(time.monotonic() - started)
            if body is None:
                continue
            doc = json.loads(body)
            blobs = [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]
            for blob in blobs:
                self.fetch(f"{base}/blobs/{blob}", blob)

    def pull_files(self) -> None:
        for path, sha in self.target.files:
            self.fetch(f"{self.target.http}/{path}", sha, tls=False)

    def pull_static(self, tls: bool = False) -> None:
        base = self.target.https if tls else self.target.http
        for path, sha in self.target.static_blobs:
            self.fetch(f"{base}/{path}", sha, tls=tls)


def run_client(target: Target, agent: str, what: str) -> PullReport:
    """One client, start to end: `what` is "registry" (images then files), "static" (the blobs as files over
    HTTP) or "static-tls" (the blobs as files from target.https)."""
    puller = Puller(target, agent)
    puller.report.started = time.time()
    try:
        if what.startswith("static"):
            puller.pull_static(tls=what == "static-tls")
        else:
            puller.pull_images()
            puller.pull_files()
    finally:
        puller.close()
    puller.report.ended = time.time()
    return puller.report


def access_log_counts(log: Path, agent_prefix: str) -> dict[str, dict[int, int]]:
    """{user agent: {status: count}} from nginx's combined access log, for agents starting with the prefix."""
    counts: dict[str, dict[int, int]] = {}
    for line in log.read_text(errors="replace").splitlines():
        parts = line.split('"')
        if len(parts) < 6 or not parts[5].startswith(agent_prefix):
            continue
        status = int(parts[2].split()[0])
        per = counts.setdefault(parts[5], {})
        per[status] = per.get(status, 0) + 1
    return counts


def rss(pid: int) -> int:
    """Resident bytes of a process and its children (nginx's workers), 0 when gone."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total
