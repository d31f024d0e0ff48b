"""Start, wait for, and stop the simulator's server processes — by PID, never by name."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kubeplay.errors import KubeplayError

READY_TIMEOUT = 30.0
POLL_INTERVAL = 0.05
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the caller retries if it is taken by then)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tls_handshake_ok(port: int, ca_cert: Path) -> bool:
    """True when a TLS server on 127.0.0.1:port completes a handshake with a certificate the CA signed."""
    context = ssl.create_default_context(cafile=str(ca_cert))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=1.0) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            return True
    except OSError:
        return False


@dataclass
class ServerProcess:
    """One child process the simulator started; its output goes to a log file under the workdir."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int = 0
    stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def wait_ready(self, probe: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
        """Poll `probe` until it answers True; raise KubeplayError if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        tries = int(timeout / POLL_INTERVAL) + 1
        for _ in range(tries):
            if self.popen.poll() is not None:
                raise KubeplayError(
                    f"{self.name} exited with code {self.popen.returncode} while starting",
                    hint=f"its log ({self.log}) ends with:\n{self.log_tail()}",
                )
            if probe():
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_INTERVAL)
        self.stop()
        raise KubeplayError(
            f"{self.name} did not become ready within {timeout:.0f}s",
            hint=f"its log ({self.log}) ends with:\n{self.log_tail()}",
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL after `timeout`; always reaps the child."""
        if self.stopped:
            return
        self.stopped = True
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=timeout)


PR_SET_PDEATHSIG = 1
try:  # resolved in the parent, so the child only makes one system call between fork and exec
    _PRCTL: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the process that started us dies (even by SIGKILL).

    Linux ties this to the starting thread, so start the simulator from a thread that outlives it.
    """
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def start_process(name: str, argv: Sequence[str], log: Path, *, cwd: Path | None = None) -> ServerProcess:
    """Start `argv` with stdout and stderr appended to `log`; stdin closed."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,  # a Ctrl-C in the test terminal must not hit the servers before we stop them
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - one prctl call, resolved before the fork
        )
    return ServerProcess(name=name, popen=popen, log=log)


def require_binary(path: str, package: str) -> str:
    """Return `path` if it is an executable file, else raise naming the Debian package to install."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise KubeplayError(
            f"{path} not found; the upstream simulator needs it",
            hint=f"install the Debian package: apt-get install {package}",
        )
    return path


def start_on_free_port(
    name: str,
    prepare: Callable[[int], list[str]],
    log: Path,
    probe: Callable[[int], bool],
    *,
    attempts: int = 3,
    extra_log: Path | None = None,
) -> ServerProcess:
    """Pick a free port, `prepare(port)` (writes config, returns argv), start, wait until `probe(port)`.

    Another process may grab the port between our check and the server's bind; then try a new port.
    """
    last_error: KubeplayError | None = None
    for _ in range(attempts):
        port = free_port()
        proc = start_process(name, prepare(port), log)
        proc.port = port
        try:
            proc.wait_ready(functools.partial(probe, port))
        except KubeplayError as exc:
            proc.stop()
            last_error = exc
            text = proc.log_tail(20000) + (
                extra_log.read_text(errors="replace") if extra_log and extra_log.exists() else ""
            )
            if "address already in use" in text.lower():
                continue
            if extra_log is not None and extra_log.exists():
                raise KubeplayError(exc.message, hint=f"{exc.hint}\n{extra_log.name}:\n{text[-2000:]}") from exc
            raise
        except BaseException:  # Ctrl-C while it starts: the caller never got it, so stop it here
            proc.stop()
            raise
        return proc
    assert last_error is not None
    raise last_error
