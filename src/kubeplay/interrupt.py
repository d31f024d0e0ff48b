"""Ctrl-C while a library runs a child process and polls a cancel callback (ansible-runner does).

Python's default SIGINT handler raises KeyboardInterrupt wherever the main thread is: inside
ansible-runner's pexpect loop that abandons ansible-playbook, which runs on in its own session. Inside
`CancelOnSigint`, SIGINT only sets a flag; ansible-runner polls it (`cancel_callback`) and kills the
play's process group; the caller then raises errors.Interrupted. The previous handler is restored on exit
(ansible-runner's own fallback handler never is, which would swallow every later Ctrl-C).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

# How often ansible-runner looks at the cancel callback (its pexpect_timeout setting; its default is 5 s).
POLL_SECONDS = 0.25


class CancelOnSigint:
    """A cancel callback that turns True once SIGINT arrives while the block runs (main thread only)."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._previous: Any = None
        self._installed = False

    def __call__(self) -> bool:
        return self.requested.is_set()

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.requested.set()

    def __enter__(self) -> CancelOnSigint:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
