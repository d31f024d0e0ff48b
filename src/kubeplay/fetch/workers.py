"""Worker threads for network jobs that one stop event ends together (Ctrl-C).

concurrent.futures' ThreadPoolExecutor joins its threads at interpreter exit, so after Ctrl-C a worker
blocked in a socket read holds the process until its read timeout, and then retries. These workers are
daemon threads: leaving a `WorkerPool` because of an exception sets the shared stop event (every retry
loop, backoff sleep and body copy checks it), cancels jobs not started, and waits at most `GRACE`
seconds for running ones to write what they hold (a body copy flushes its block into the .part) before
the caller goes on; a worker still blocked in a read is abandoned, and dies with the process.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from kubeplay.errors import Interrupted

_T = TypeVar("_T")
GRACE = 0.5


class WorkerPool:
    """Up to `workers` daemon threads running submitted jobs; use as a context manager."""

    def __init__(self, workers: int, name: str, stop: threading.Event) -> None:
        self.workers = max(1, workers)
        self.name = name
        self.stop = stop
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.shutdown()
        else:
            self.abandon()

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        """Run `fn(*args)` on a worker; the future fails with Interrupted if the pool stops before it starts."""
        future: Future[_T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: submit after shutdown")
            self._jobs.put((future, lambda: fn(*args)))
            if self._idle == 0 and len(self._threads) < self.workers:
                thread = threading.Thread(target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1 if self._idle else 0
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, call = job
            if not future.set_running_or_notify_cancel():
                continue
            if self.stop.is_set():
                future.set_exception(Interrupted(f"{self.name}: stopped before it started"))
            else:
                try:
                    future.set_result(call())
                except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Wait for every job submitted; then end the workers."""
        self._close()
        for thread in self._threads:
            thread.join()

    def abandon(self) -> None:
        """Stop: set the stop event, cancel jobs not started, give running ones GRACE seconds, leave the rest."""
        self.stop.set()
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job[0].cancel()
        self._close()
        deadline = time.monotonic() + GRACE
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._jobs.put(None)
