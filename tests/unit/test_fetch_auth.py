"""Registry auth flows: Bearer token per scope (cached), Basic, and clear errors without secrets."""

from __future__ import annotations

import base64

import httpx
import pytest

from kubeplay.errors import AuthFailed
from kubeplay.fetch.auth import ChallengeAuth, parse_challenge
from kubeplay.fetch.mirrors import Credentials

REALM = "https://auth.example.test/token"
SECRET = "s3cret-pa55"


def test_parse_challenge_reads_quoted_params() -> None:
    c = parse_challenge(f'Bearer realm="{REALM}",service="registry.example.test",scope="repository:a/b:pull"')
    assert c is not None and c.scheme == "bearer"
    assert c.params == {"realm": REALM, "service": "registry.example.test", "scope": "repository:a/b:pull"}
    assert parse_challenge('Basic realm="x"') == parse_challenge('basic realm="x"')


class FakeRegistry:
    """A registry that wants a Bearer token per repository, issued for user/SECRET."""

    def __init__(self) -> None:
        self.token_calls: list[str] = []
        self.unauthenticated = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.test":
            auth = request.headers.get("authorization", "")
            if auth != "Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode():
                return httpx.Response(401)
            scope = request.url.params["scope"]
            self.token_calls.append(scope)
            return httpx.Response(200, json={"token": f"tok-{scope}", "expires_in": 300})
        repo = request.url.path.split("/")[2]
        scope = f"repository:{repo}:pull"
        if request.headers.get("authorization") != f"Bearer tok-{scope}":
            self.unauthenticated += 1
            challenge = f'Bearer realm="{REALM}",service="reg",scope="{scope}"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return httpx.Response(200, content=b"ok")


def test_bearer_token_is_fetched_once_per_scope_and_sent_up_front() -> None:
    registry = FakeRegistry()
    auth = ChallengeAuth(Credentials("user", SECRET))
    with httpx.Client(transport=httpx.MockTransport(registry), auth=auth) as client:
        for _ in range(3):
            assert client.get("https://reg.example.test/v2/app/blobs/sha256:1").status_code == 200
        assert client.get("https://reg.example.test/v2/other/manifests/v1").status_code == 200
    assert registry.token_calls == ["repository:app:pull", "repository:other:pull"]
    assert registry.unauthenticated == 1  # one challenge per host; each new repository's token is fetched first


def test_a_token_fetched_ahead_for_the_wrong_scope_falls_back_to_the_challenge() -> None:
    # A registry whose scopes are not named like the path (here: a prefix): the token fetched ahead is
    # refused, the 401's own scope is fetched, and the pull still works.
    tokens: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.test":
            tokens.append(request.url.params["scope"])
            return httpx.Response(200, json={"token": f"tok-{request.url.params['scope']}"})
        scope = f"repository:proxy/{request.url.path.split('/')[2]}:pull"
        if request.headers.get("authorization") != f"Bearer tok-{scope}":
            challenge = f'Bearer realm="{REALM}",service="reg",scope="{scope}"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return httpx.Response(200, content=b"ok")

    with httpx.Client(transport=httpx.MockTransport(handler), auth=ChallengeAuth(None)) as client:
        assert client.get("https://reg.example.test/v2/app/manifests/v1").status_code == 200
        assert client.get("https://reg.example.test/v2/other/manifests/v1").status_code == 200
    assert tokens == ["repository:proxy/app:pull", "repository:other:pull", "repository:proxy/other:pull"]


def test_wrong_password_raises_without_showing_it() -> None:
    auth = ChallengeAuth(Credentials("user", "wrong-" + SECRET), label="https://reg.example.test")
    with (
        httpx.Client(transport=httpx.MockTransport(FakeRegistry()), auth=auth) as client,
        pytest.raises(AuthFailed) as info,
    ):
        client.get("https://reg.example.test/v2/app/manifests/v1")
    assert "refused the configured credentials" in str(info.value)
    assert SECRET not in str(info.value)


def test_basic_challenge_without_credentials_says_so() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})

    with (
        httpx.Client(transport=httpx.MockTransport(handler), auth=ChallengeAuth(None)) as client,
        pytest.raises(AuthFailed, match="requires a username and password"),
    ):
        client.get("https://reg.example.test/v2/")


def test_credentials_hide_the_password_in_repr() -> None:
    creds = Credentials("user", SECRET)
    assert SECRET not in repr(creds) and SECRET not in str(creds)


def test_a_stalled_token_service_times_out_like_any_request() -> None:
    # The token request is made inside the auth flow; it must carry the client's timeouts, or a token
    # service that accepts and never answers would hold the build forever.
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            if self.path.startswith("/token"):
                release.wait(10)  # stalls until the test is over
                return
            self.send_response(401)
            realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
            self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="s"')
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v2/a/b/manifests/1"
        started = time.monotonic()
        with httpx.Client(timeout=0.5) as client, pytest.raises(httpx.ReadTimeout):
            client.get(url, auth=ChallengeAuth(None))
        assert time.monotonic() - started < 5
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
