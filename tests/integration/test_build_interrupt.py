"""Ctrl-C during `kubeplay build`: control comes back at once, the user is told what was interrupted and how
to resume (exit 130), and what arrived of each download is kept and used by the re-run.

The only timing asserted is a generous bound on getting control back (that is the feature: about a
second; the bound leaves room for a loaded machine and is far below the 20 s read timeout a build that
ignored Ctrl-C would wait out, then retry).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests import build_fixture as fx

from kubeplay.lab.upstream import UpstreamSimulator

pytestmark = pytest.mark.integration

CONTROL_BACK = 5.0  # seconds from SIGINT to exit: generous (see the module docstring)


cli = fx.kubeplay_with_plan  # the real CLI with the plan handed in (the catalog is tested on its own)


@contextmanager
def silent_server() -> Iterator[tuple[int, Callable[[], int]]]:
    """A loopback server that accepts connections and never answers; yields (port, connections so far)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], lambda: len(held)
    finally:
        done.set()
        listener.close()
        for conn in held:
            conn.close()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def interrupt(proc: subprocess.Popen[str]) -> tuple[float, str]:
    """SIGINT `proc`; return (seconds until it exited, its stderr)."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        _stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("kubeplay build still running 60 s after SIGINT") from None
    return time.monotonic() - sent, " ".join(stderr.split())


@pytest.mark.parametrize("stalled", ["files", "image manifests"])
def test_sigint_with_stalled_downloads_gives_control_back(
    upstream: UpstreamSimulator, tmp_path: Path, stalled: str
) -> None:
    archive, sha = fx.kubespray_archive(tmp_path / "src")
    with silent_server() as (port, connections):
        if stalled == "files":
            files = [fx.file_artifact(f"https://dl.k8s.io/kp-stall/v1/file{i}", b"x" * 1000) for i in range(3)]
            plan = fx.make_plan(files, [])
            mirrors = {"dl.k8s.io": {"url": f"http://127.0.0.1:{port}/dl.k8s.io"}}
        else:
            plan = fx.make_plan([], [fx.image_artifact("registry.k8s.io/kp-stall/img:v1")])
            mirrors = {"registry.k8s.io": {"url": f"http://127.0.0.1:{port}/registry.k8s.io"}}
        spec = fx.write_spec(tmp_path, upstream, str(archive), sha, mirrors=mirrors)
        proc = fx.kubeplay_with_plan(plan, tmp_path, "build", str(spec), "-o", str(tmp_path / "b"), "--timeout", "20")
        wait_for(lambda: connections() > 0 or proc.poll() is not None, 60, "the build to connect to the mirror")
        assert proc.poll() is None, proc.communicate()
        time.sleep(1.0)  # every request is now waiting on the silent server
        seconds, stderr = interrupt(proc)
    assert proc.returncode == 130, stderr
    assert seconds < CONTROL_BACK, f"{seconds:.1f} s from SIGINT to exit"
    assert "interrupted" in stderr and "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    if stalled == "files":
        assert "while downloading files: 0 of 3 done" in stderr
    else:
        assert "kubeplay build interrupted" in stderr
    assert not (tmp_path / "b" / "SHA256SUMS").exists()


def test_sigint_mid_transfer_keeps_the_part_and_the_rerun_fetches_only_the_rest(
    upstream: UpstreamSimulator, tmp_path: Path
) -> None:
    data = os.urandom(3_000_000)
    url = "https://dl.k8s.io/kp-sigint/v1/kubeadm"
    upstream.add_file(url, data)
    archive, sha = fx.kubespray_archive(tmp_path / "src")
    plan = fx.make_plan([fx.file_artifact(url, data, name="kubeadm")], [])
    slow = fx.mirrors_with(upstream, dl_k8s_io=f"{upstream.faults_url}/slow/300000/dl.k8s.io")
    out = tmp_path / "b"
    part = out / "files/dl.k8s.io/kp-sigint/v1/kubeadm.part"
    spec = fx.write_spec(tmp_path / "slow", upstream, str(archive), sha, mirrors=slow)
    proc = fx.kubeplay_with_plan(plan, tmp_path, "build", str(spec), "-o", str(out))
    wait_for(lambda: (part.is_file() and part.stat().st_size > 300_000) or proc.poll() is not None, 60, "bytes")
    assert proc.poll() is None, proc.communicate()
    seen = part.stat().st_size
    seconds, stderr = interrupt(proc)
    assert proc.returncode == 130, stderr
    assert seconds < CONTROL_BACK, f"{seconds:.1f} s from SIGINT to exit"
    assert "interrupted while downloading files: 0 of 1 done" in stderr
    assert "run the same command again to resume" in stderr
    kept = part.stat().st_size
    assert seen <= kept < len(data)
    assert part.read_bytes() == data[:kept]  # what arrived is on disk, in order, nothing more

    # The re-run goes through the fault server's pass-through path (fail/0), which logs every request.
    upstream.reset_faults()
    logged = fx.mirrors_with(upstream, dl_k8s_io=f"{upstream.faults_url}/fail/0/dl.k8s.io")
    spec = fx.write_spec(tmp_path / "fast", upstream, str(archive), sha, mirrors=logged)
    rerun = fx.kubeplay_with_plan(plan, tmp_path, "build", str(spec), "-o", str(out))
    _stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert (out / "files/dl.k8s.io/kp-sigint/v1/kubeadm").read_bytes() == data
    # (the slow path logs the interrupted request only once it notices the closed connection: not counted)
    gets = [r for r in upstream.fault_requests() if str(r["path"]) == "/fail/0/dl.k8s.io/kp-sigint/v1/kubeadm"]
    assert [(r["method"], r["range"], r["status"], r["sent"]) for r in gets] == [
        ("GET", f"bytes={kept}-", 206, len(data) - kept)
    ]
