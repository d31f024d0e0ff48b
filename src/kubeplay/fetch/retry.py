"""When to retry an idempotent GET, and how long to wait: exponential backoff with jitter, bounded twice.

Bounded in count (`attempts`) and in total time (`deadline` seconds from the first try), so a dead
upstream fails an item in minutes rather than never. Only transient faults are retried: connection
errors, timeouts, truncated bodies, 408/425/429 and 5xx. A 404 or a digest mismatch is final.
`RetryClock.back_off` is where every retry loop (downloads, manifests, push) maps what went wrong: a
transient fault waits and returns, an HTTP fault no retry fixes or tries used up raise errors.FetchError,
a stop (Ctrl-C) during the wait raises errors.Interrupted.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import httpx

from kubeplay.errors import FetchError, Interrupted

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class TransientError(Exception):
    """A failure worth another try (a 5xx, a cut body); carries the reason shown if tries run out.

    Private to the retry loops (fetch.http, fetch.oci, bootstrap.push): they raise FetchError when they
    give up, so this never reaches the user.
    """


def is_transient(exc: BaseException) -> bool:
    """True for faults a retry can fix."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in RETRYABLE_STATUS
    # TransportError covers connect/read/write errors, timeouts and cut bodies (RemoteProtocolError).
    return isinstance(exc, httpx.TransportError)


@dataclass
class RetryPolicy:
    attempts: int = 5
    base: float = 0.5
    cap: float = 15.0
    deadline: float = 600.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before try number `attempt + 1` (attempt counts from 1): jittered 2^n backoff."""
        ceiling = min(self.cap, self.base * (2 ** (attempt - 1)))
        return float(ceiling * (0.5 + self.rng.random() / 2))

    def start(self) -> RetryClock:
        return RetryClock(self, time.monotonic())


@dataclass
class RetryClock:
    """Tracks one item's tries against the policy."""

    policy: RetryPolicy
    started: float
    attempt: int = 0

    def next_wait(self) -> float | None:
        """Seconds to sleep before the next try, or None when tries or time are used up."""
        self.attempt += 1
        if self.attempt >= self.policy.attempts:
            return None
        wait = self.policy.delay(self.attempt)
        if time.monotonic() + wait - self.started > self.policy.deadline:
            return None
        return wait

    def back_off(self, exc: Exception, stop: threading.Event, *, hint: str | None = None) -> None:
        """After try number `attempt` failed with `exc`: wait and return when another try may fix it.

        Raises FetchError (with `hint`) for an HTTP fault no retry fixes and when tries or time are used
        up, Interrupted when `stop` is set during the wait, and `exc` itself when it is not an HTTP fault.
        """
        if not is_transient(exc):
            if isinstance(exc, httpx.HTTPError):
                raise FetchError(describe(exc), hint=hint) from exc
            raise exc
        wait = self.next_wait()
        if wait is None:
            raise FetchError(f"{describe(exc)} (gave up after {self.attempt} tries)", hint=hint) from exc
        if stop.wait(wait):
            raise Interrupted("stopped while waiting to try again") from exc


def describe(exc: BaseException) -> str:
    """A one-line reason for a failure, without URLs (the caller names the item)."""
    if isinstance(exc, httpx.HTTPStatusError):
        r = exc.response
        return f"HTTP {r.status_code} {r.reason_phrase}".strip()
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection closed before the whole body arrived"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {_first_line(exc)}"
    if isinstance(exc, httpx.TransportError):
        return f"{type(exc).__name__}: {_first_line(exc)}"
    return _first_line(exc) or type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
