"""A minimal OCI push client for the simulator registry: blob uploads and manifests, with basic or Bearer auth."""

from __future__ import annotations

import hashlib
import re
import ssl
import urllib.parse
from pathlib import Path

import httpx

from kubeplay.errors import KubeplayError

_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…",scope="…"` -> ("bearer", {realm, service, scope})."""
    scheme, _, params = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(params))


class RegistryPusher:
    """Writes blobs and manifests through the registry's HTTP API, like `docker push` would."""

    def __init__(self, base_url: str, ca_cert: Path, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(verify=ssl.create_default_context(cafile=str(ca_cert)), timeout=60.0)
        self.basic = httpx.BasicAuth(username, password)
        self.tokens: dict[str, str] = {}
        self.use_basic = False

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> RegistryPusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _token(self, challenge: dict[str, str], scope: str) -> str:
        realm = challenge.get("realm")
        if not realm:
            raise KubeplayError("the simulator registry sent a Bearer challenge without a realm")
        params = {"service": challenge.get("service", ""), "scope": challenge.get("scope", scope)}
        response = self.client.get(realm, params=params, auth=self.basic)
        if response.status_code != 200:
            raise KubeplayError(f"the simulator token service answered {response.status_code} for scope {scope}")
        body = response.json()
        token: str = body.get("token") or body.get("access_token")
        return token

    def request(
        self,
        method: str,
        url: str,
        scope: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request, answering a 401 challenge once (basic or Bearer) and retrying."""
        full = url if url.startswith("https://") else self.base_url + url
        for _ in range(2):
            hdrs = dict(headers or {})
            auth: httpx.Auth | None = None
            if scope in self.tokens:
                hdrs["Authorization"] = f"Bearer {self.tokens[scope]}"
            elif self.use_basic:
                auth = self.basic
            response = self.client.request(method, full, content=content, headers=hdrs, auth=auth)
            if response.status_code != 401:
                return response
            scheme, challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
            if scheme == "basic":
                if self.use_basic:
                    break
                self.use_basic = True
            elif scheme == "bearer":
                if scope in self.tokens:
                    del self.tokens[scope]
                self.tokens[scope] = self._token(challenge, scope)
            else:
                break
        raise KubeplayError(f"the simulator registry refused {method} {url}: 401 after authenticating")

    def blob_exists(self, repository: str, digest: str) -> bool:
        scope = f"repository:{repository}:pull,push"
        response = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", scope)
        return response.status_code == 200

    def push_blob(self, repository: str, data: bytes) -> str:
        """Upload `data` as a blob (monolithic POST then PUT ?digest=) unless present; return its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.blob_exists(repository, digest):
            return digest
        scope = f"repository:{repository}:pull,push"
        started = self.request("POST", f"/v2/{repository}/blobs/uploads/", scope)
        if started.status_code != 202 or "Location" not in started.headers:
            raise KubeplayError(f"blob upload to {repository} did not start: {started.status_code} {started.text}")
        location = urllib.parse.urljoin(self.base_url + "/", started.headers["Location"])
        separator = "&" if "?" in location else "?"
        finished = self.request(
            "PUT",
            f"{location}{separator}digest={urllib.parse.quote(digest)}",
            scope,
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if finished.status_code != 201:
            raise KubeplayError(f"blob upload to {repository} failed: {finished.status_code} {finished.text}")
        return digest

    def push_manifest(self, repository: str, reference: str, media_type: str, data: bytes) -> str:
        """PUT a manifest or index by tag or digest; return its digest."""
        scope = f"repository:{repository}:pull,push"
        response = self.request(
            "PUT", f"/v2/{repository}/manifests/{reference}", scope, content=data, headers={"Content-Type": media_type}
        )
        if response.status_code != 201:
            raise KubeplayError(
                f"manifest {repository}:{reference} was refused: {response.status_code} {response.text[:500]}"
            )
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        served = response.headers.get("Docker-Content-Digest")
        if served and served != digest:
            raise KubeplayError(f"registry stored {repository}:{reference} as {served}, expected {digest}")
        return digest
