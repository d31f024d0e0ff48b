"""Registry and mirror authentication as an httpx auth flow: anonymous first, then answer the challenge.

A 401 carries `WWW-Authenticate`. `Basic` is answered with the configured credentials. `Bearer
realm=…,service=…,scope=…` (Docker Hub, quay, ghcr, Harbor, the lab token service) is answered by
getting a token from the realm — with the credentials when there are some, anonymously otherwise —
and retrying with it. Tokens are cached per (realm, service, scope) until shortly before they expire,
and the scheme a host asked for is remembered, so later requests carry the token up front and a pull of
many blobs costs one token request per repository, not one 401 per blob; the token of a repository not
seen yet on a Bearer host is fetched before its first request, so only a host's first request costs a 401.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import urllib.parse
from collections.abc import Generator
from contextlib import suppress
from dataclasses import dataclass

import httpx

from kubeplay.errors import AuthFailed
from kubeplay.fetch.mirrors import Credentials

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags)/")
TOKEN_SLACK = 10.0
DEFAULT_TOKEN_LIFETIME = 60.0


@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge in a WWW-Authenticate header, scheme lower-cased; None when unreadable."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def repository_scope(url: httpx.URL) -> str | None:
    m = _REPO_PATH.match(url.path)
    return f"repository:{m['name']}:pull" if m else None


def basic_header(creds: Credentials) -> str:
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


class ChallengeAuth(httpx.Auth):
    """Thread-safe auth for one endpoint's credentials (or none)."""

    def __init__(self, credentials: Credentials | None, *, label: str = "") -> None:
        self.credentials = credentials
        self.label = label
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._hosts: dict[str, Challenge] = {}
        self.token_requests = 0

    def _origin(self, url: httpx.URL) -> str:
        return f"{url.scheme}://{url.netloc.decode()}"

    def _cached(self, challenge: Challenge, scope: str) -> str | None:
        key = (challenge.params.get("realm", ""), challenge.params.get("service", ""), scope)
        with self._lock:
            hit = self._tokens.get(key)
        if hit and hit[1] > time.monotonic():
            return hit[0]
        return None

    def _upfront(self, request: httpx.Request) -> str | None:
        with self._lock:
            known = self._hosts.get(self._origin(request.url))
        if known is None:
            return None
        if known.scheme == "basic":
            return basic_header(self.credentials) if self.credentials else None
        scope = repository_scope(request.url)
        token = self._cached(known, scope) if scope else None
        return f"Bearer {token}" if token else None

    def _ahead(self, request: httpx.Request) -> tuple[Challenge, str] | None:
        """The host's Bearer challenge and this request's scope, when a token can be fetched before asking."""
        with self._lock:
            known = self._hosts.get(self._origin(request.url))
        scope = repository_scope(request.url)
        if known is None or known.scheme != "bearer" or "realm" not in known.params or not scope:
            return None
        return known, scope

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        header = self._upfront(request)
        ahead = None if header else self._ahead(request)
        if ahead is not None:
            # A repository not seen yet on a host known to want Bearer tokens: get its token first (as docker
            # does) instead of paying a 401 round trip per repository. Any trouble: the challenge path below.
            token_response = yield self._token_request(*ahead, request)
            token_response.read()
            if token_response.status_code == 200:
                with suppress(AuthFailed):
                    header = f"Bearer {self._store_token(*ahead, token_response)}"
        if header:
            request.headers["Authorization"] = header
        response = yield request
        if response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge is None:
            return
        with self._lock:
            self._hosts[self._origin(request.url)] = challenge
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise AuthFailed(f"{self._who()} requires a username and password and none is configured")
            if request.headers.get("Authorization", "").startswith("Basic "):
                raise AuthFailed(f"{self._who()} refused the configured credentials (HTTP 401)")
            request.headers["Authorization"] = basic_header(self.credentials)
            yield request
            return
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise AuthFailed(f"{self._who()} asks for unsupported authentication {challenge.scheme!r}")
        scope = challenge.params.get("scope") or repository_scope(request.url) or ""
        token = None if request.headers.get("Authorization") else self._cached(challenge, scope)
        if token is None:
            token_response = yield self._token_request(challenge, scope, request)
            token_response.read()
            token = self._store_token(challenge, scope, token_response)
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def _who(self) -> str:
        return self.label or "the registry"

    def _token_request(self, challenge: Challenge, scope: str, original: httpx.Request) -> httpx.Request:
        params = {"service": challenge.params.get("service", "")}
        if scope:
            params["scope"] = scope
        realm = challenge.params["realm"]
        if urllib.parse.urlsplit(realm).scheme not in ("https", "http"):
            raise AuthFailed(f"{self._who()} names a token realm that is not an http(s) URL")
        headers = {"Authorization": basic_header(self.credentials)} if self.credentials else {}
        with self._lock:
            self.token_requests += 1
        # A request made here gets no timeouts from the client (only client.build_request adds them): without
        # the original's, a stalled token service would hold this thread forever.
        timeout = original.extensions.get("timeout")
        extensions = {"timeout": timeout} if timeout is not None else None
        return httpx.Request("GET", realm, params=params, headers=headers, extensions=extensions)

    def _store_token(self, challenge: Challenge, scope: str, response: httpx.Response) -> str:
        if response.status_code in (401, 403):
            what = "refused the configured credentials" if self.credentials else "requires credentials"
            raise AuthFailed(f"token service of {self._who()} {what} (HTTP {response.status_code})")
        if response.status_code != 200:
            raise AuthFailed(f"token service of {self._who()} answered HTTP {response.status_code}")
        try:
            body = response.json()
            token = str(body.get("token") or body.get("access_token") or "")
            lifetime = float(body.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError):
            token, lifetime = "", 0.0
        if not token:
            raise AuthFailed(f"token service of {self._who()} returned no token")
        key = (challenge.params.get("realm", ""), challenge.params.get("service", ""), scope)
        with self._lock:
            self._tokens[key] = (token, time.monotonic() + max(lifetime - TOKEN_SLACK, 1.0))
        return token
