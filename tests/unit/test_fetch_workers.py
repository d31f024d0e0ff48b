"""WorkerPool: jobs run and return results; leaving it on an exception stops everything without waiting for a
job stuck in a read (the Ctrl-C path); jobs not started then never run."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError, as_completed

import pytest

from kubeplay.errors import Interrupted
from kubeplay.fetch.workers import GRACE, WorkerPool


def test_jobs_run_on_at_most_n_threads_and_return_their_results() -> None:
    seen: set[str] = set()

    def job(n: int) -> int:
        seen.add(threading.current_thread().name)
        time.sleep(0.01)
        return n * n

    with WorkerPool(3, "kp-test", threading.Event()) as pool:
        futures = [pool.submit(job, n) for n in range(20)]
        results = sorted(f.result() for f in as_completed(futures))
    assert results == [n * n for n in range(20)]
    assert 1 <= len(seen) <= 3 and all(name.startswith("kp-test-") for name in seen)


def test_an_exception_stops_the_pool_without_waiting_for_a_stuck_job() -> None:
    stop = threading.Event()
    release = threading.Event()
    started = threading.Event()
    ran: list[int] = []

    def stuck() -> None:
        started.set()
        release.wait(30)  # a read that would take the whole timeout

    def later(n: int) -> None:
        ran.append(n)

    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt), WorkerPool(1, "kp-stuck", stop) as pool:
        pool.submit(stuck)
        waiting = [pool.submit(later, n) for n in range(5)]
        started.wait(5)
        raise KeyboardInterrupt
    left = time.monotonic() - began
    release.set()
    assert stop.is_set()
    assert left < GRACE + 2  # the stuck job was abandoned, not waited for
    for future in waiting:
        with pytest.raises((CancelledError, Interrupted)):
            future.result(timeout=5)
    assert ran == []


def test_a_job_taken_after_the_stop_fails_with_interrupted() -> None:
    stop = threading.Event()
    stop.set()
    with WorkerPool(2, "kp-stopped", stop) as pool:
        future = pool.submit(lambda: "ran")
    with pytest.raises(Interrupted):
        future.result(timeout=5)
