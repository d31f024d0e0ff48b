"""A small OCI distribution client on httpx: manifests by tag or digest, blob URLs, auth via ChallengeAuth.

Manifests are read whole (they are small; a cap guards memory) and checked against the digest asked for
and the registry's Docker-Content-Digest. Blobs are not read here: they go through the Downloader as
`<base>/v2/<repository>/blobs/<digest>`, which streams, resumes and verifies them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import httpx

from kubeplay.errors import FetchError, Interrupted, NotUpstream
from kubeplay.fetch.clients import ClientPool
from kubeplay.fetch.mirrors import RegistryEndpoint
from kubeplay.fetch.platforms import ACCEPT, media_type_of
from kubeplay.fetch.retry import RetryPolicy, TransientError

MAX_MANIFEST = 4 << 20


@dataclass(frozen=True)
class Fetched:
    data: bytes
    media_type: str
    digest: str


class RegistryClient:
    """Reads manifests from registries through the shared client pool (so tokens are shared with blobs)."""

    def __init__(self, clients: ClientPool, policy: RetryPolicy | None = None) -> None:
        self.clients = clients
        self.policy = policy or RetryPolicy()
        self.requests = 0

    def manifest_url(self, endpoint: RegistryEndpoint, repository: str, reference: str) -> str:
        return f"{endpoint.base}/v2/{endpoint.repository(repository)}/manifests/{reference}"

    def blob_url(self, endpoint: RegistryEndpoint, repository: str, digest: str) -> str:
        return f"{endpoint.base}/v2/{endpoint.repository(repository)}/blobs/{digest}"

    def manifest(self, endpoint: RegistryEndpoint, repository: str, reference: str) -> Fetched:
        """GET a manifest or index; raise FetchError (404, auth, wrong digest, retries used up), Interrupted."""
        return self._read(self.manifest_url(endpoint, repository, reference), reference, "manifest")

    def referrers(self, endpoint: RegistryEndpoint, repository: str, digest: str) -> Fetched:
        """GET the OCI 1.1 referrers index of `digest`; NotUpstream (404) where the registry has no referrers API."""
        url = f"{endpoint.base}/v2/{endpoint.repository(repository)}/referrers/{digest}"
        return self._read(url, f"referrers of {digest}", "referrers index")

    def tag_list(self, endpoint: RegistryEndpoint, repository: str, limit: int = 1000) -> list[str]:
        """The repository's tags (first page, up to `limit`); NotUpstream (404) for an unknown repository."""
        url = f"{endpoint.base}/v2/{endpoint.repository(repository)}/tags/list?n={limit}"
        document = json.loads(self._read(url, f"tags of {repository}", "tag list").data)
        tags = document.get("tags") if isinstance(document, dict) else None
        return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []

    def small_blob(self, endpoint: RegistryEndpoint, repository: str, digest: str) -> bytes:
        """GET a small blob (an image config) into memory, verified against `digest`."""
        return self._read(self.blob_url(endpoint, repository, digest), digest, "blob").data

    def _read(self, url: str, reference: str, what: str) -> Fetched:
        session = self.clients.for_url(self.clients.resolve(url))  # the same session the blob downloads use
        clock = self.policy.start()
        while True:
            if self.clients.stop.is_set():
                raise Interrupted(f"reading {what} {reference} stopped")
            try:
                return self._get(session.client, session.auth, url, reference)
            except (FetchError, ValueError):
                raise
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == 404:
                    raise NotUpstream(f"{what} {reference} not found (HTTP 404)") from exc
                clock.back_off(exc, self.clients.stop)
            except Exception as exc:  # noqa: BLE001 - back_off raises again what no retry fixes
                clock.back_off(exc, self.clients.stop)

    def _get(self, client: httpx.Client, auth: httpx.Auth, url: str, reference: str) -> Fetched:
        self.requests += 1
        with client.stream("GET", url, headers={"Accept": ACCEPT}, auth=auth) as response:
            response.raise_for_status()
            chunks: list[bytes] = []
            total = 0
            for chunk in response.iter_raw():
                total += len(chunk)
                if total > MAX_MANIFEST:
                    raise FetchError(f"{reference}: larger than {MAX_MANIFEST} bytes; refusing it")
                chunks.append(chunk)
            length = response.headers.get("content-length")
            if length and length.isdigit() and int(length) != total:
                raise TransientError("connection closed before the whole body arrived")
            data = b"".join(chunks)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            if reference.startswith("sha256:") and digest != reference:
                raise FetchError(f"digest mismatch: expected {reference}, got {digest}")
            header = response.headers.get("docker-content-digest")
            if header and header.startswith("sha256:") and header != digest:
                raise FetchError(f"digest mismatch: registry says {header}, content has {digest}")
            return Fetched(data, media_type_of(data, response.headers.get("content-type")), digest)
