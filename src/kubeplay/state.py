"""The step ledger: which steps of a command are done, keyed by a hash of their inputs (kubeplay.steps runs them).

A step whose recorded input hash matches is skipped on a re-run; a changed input (a new registry
domain, say) makes it run again. The ledger is written atomically after every step, so a `kill -9`
loses at most the step that was running.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def input_hash(inputs: Any) -> str:
    """A stable sha256 over JSON-serialisable inputs (keys sorted)."""
    blob = json.dumps(inputs, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` via a temp file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Ledger:
    """Persisted record of completed steps: {step: {"hash": ..., "finished": epoch, "seconds": ...}}."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.steps: dict[str, dict[str, Any]] = {}
        if path.exists():
            self.steps = json.loads(path.read_text(encoding="utf-8")).get("steps", {})

    def is_done(self, step: str, digest: str) -> bool:
        entry = self.steps.get(step)
        return entry is not None and entry.get("hash") == digest

    def mark_done(self, step: str, digest: str, seconds: float | None = None) -> None:
        self.steps[step] = {"hash": digest, "finished": time.time()}
        if seconds is not None:
            self.steps[step]["seconds"] = round(seconds, 1)
        self._save()

    def forget(self, step: str) -> None:
        if self.steps.pop(step, None) is not None:
            self._save()

    def forget_from(self, order: list[str], step: str) -> None:
        """Forget `step` and every step after it in `order` (for `--from STEP`)."""
        for name in order[order.index(step) :]:
            self.steps.pop(name, None)
        self._save()

    def _save(self) -> None:
        body = json.dumps({"steps": self.steps}, indent=2, sort_keys=True).encode()
        atomic_write(self.path, body)
