"""One httpx client per (TLS trust, credentials), shared by file downloads and the registry client.

Connections are kept alive across items, TLS contexts are built once, and each credentials set has one
`ChallengeAuth`, so tokens are reused by every thread pulling from the same registry. Its `stop` event
is the one every request loop, backoff and worker pool using these clients checks (set on Ctrl-C).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import httpx

from kubeplay import __version__
from kubeplay.errors import Interrupted, NotUpstream
from kubeplay.fetch.auth import ChallengeAuth
from kubeplay.fetch.mirrors import Credentials, MirrorSet, Resolved, Tls
from kubeplay.fetch.retry import RetryPolicy

USER_AGENT = f"kubeplay/{__version__}"


@dataclass(frozen=True)
class Session:
    client: httpx.Client
    auth: ChallengeAuth


class ClientPool:
    """Thread-safe cache of clients; close() when done. `stop` is set when the run is being interrupted."""

    def __init__(self, mirrors: MirrorSet | None = None, *, connections: int = 8, timeout: float = 60.0) -> None:
        self.mirrors = mirrors or MirrorSet()
        self.connections = connections
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sessions: dict[tuple[Tls, str | None, str], Session] = {}
        self.stop = threading.Event()

    def resolve(self, url: str) -> Resolved:
        return self.mirrors.resolve(url)

    def session(self, tls: Tls, credentials: Credentials | None, label: str = "") -> Session:
        key = (tls, credentials.username if credentials else None, label if credentials else "")
        with self._lock:
            found = self._sessions.get(key)
            if found is None:
                # Two per job: a job's token request goes to another origin (the realm) than its registry request.
                limit = self.connections * 2
                client = httpx.Client(
                    verify=tls.verify(),
                    timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 30.0)),
                    # Keep-alive limit = connection limit, so httpcore never closes "surplus" idle
                    # connections. httpcore 1.0.9 counts every connection as idle there and closes, outside
                    # its lock, connections it has just handed to a waiting request: seen here as
                    # `[Errno 9] Bad file descriptor` on a push (encode/httpcore#1110).
                    limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
                    follow_redirects=True,
                    headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
                )
                found = Session(client, ChallengeAuth(credentials, label=label))
                self._sessions[key] = found
            return found

    def for_url(self, resolved: Resolved) -> Session:
        return self.session(resolved.tls, resolved.credentials, label=_origin(resolved.url))

    def request(
        self, policy: RetryPolicy, method: str, url: str, *, task: str, not_found: str | None = None
    ) -> httpx.Response:
        """`method url` through the mirrors (their TLS and credentials), a successful response read whole.

        Transient faults are tried again as `policy` allows (RetryClock.back_off raises FetchError for the
        rest); a stop raises Interrupted("<task> stopped"); with `not_found`, a 404 raises NotUpstream at once.
        """
        resolved = self.resolve(url)
        session = self.for_url(resolved)
        clock = policy.start()
        while True:
            if self.stop.is_set():
                raise Interrupted(f"{task} stopped")
            try:
                response = session.client.request(method, resolved.url, auth=session.auth)
                if not_found is not None and response.status_code == 404:
                    raise NotUpstream(not_found)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                clock.back_off(exc, self.stop)
                continue
            return response

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for s in sessions:
            s.client.close()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:
            self.stop.set()
        self.close()


def _origin(url: str) -> str:
    u = httpx.URL(url)
    return f"{u.scheme}://{u.host}" + (f":{u.port}" if u.port else "")
