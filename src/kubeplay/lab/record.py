"""The lab's state file: exactly what `lab up` created, written before each creation step.

`lab down` walks this list backwards and removes each thing that still exists, so a crash of `lab up`
at any point leaves a record that `lab down` can finish from. Nothing outside the list is ever touched.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from kubeplay import settings
from kubeplay.errors import BadInput, KubeplayError, LabStateError
from kubeplay.state import atomic_write

STATE_FILE = "lab.json"
POWER_LOCK = "power.lock"


class Resource(BaseModel):
    """One thing the lab created. `done` is False while its creation is under way."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["dir", "netns", "link", "process"]
    name: str  # a path, a namespace name, a link name, or a machine name
    netns: str | None = None  # the namespace a link lives in
    pid: int | None = None
    start_time: int | None = None  # /proc/<pid>/stat field 22, so a reused PID is never signalled
    done: bool = False


class NodeRecord(BaseModel):
    """A lab node as `ssh`, `cp` and the Python API need it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    ip: str
    netns: str
    link: str
    machine: str
    root: str
    log: str


class LabRecord(BaseModel):
    """The whole lab: its addresses, nodes, key, and the ordered list of what was created."""

    model_config = ConfigDict(extra="forbid")

    name: str
    subnet: str
    bridge_ip: str
    netns: str
    dir: str
    key: str
    known_hosts: str
    nodes: list[NodeRecord] = []
    resources: list[Resource] = []
    created: float = 0.0
    # How the nodes were booted, so `power_on` (from any process) boots a node again the same way.
    # Defaults keep state files written before these fields loadable.
    nspawn_args: list[str] = []
    nspawn_env: dict[str, str] = {}  # added to systemd-nspawn's environment (names only are ever printed)
    rootfs_key: str | None = None  # the rootfs cache entry the nodes were copied from (`lab cache prune` keeps it)

    def process(self, machine: str) -> Resource | None:
        """The recorded systemd-nspawn process of `machine`, or None if none was started."""
        return next((r for r in self.resources if r.kind == "process" and r.name == machine), None)


def default_state_root() -> Path:
    """$KUBEPLAY_LAB_DIR, else /var/lib/kubeplay/lab; each lab lives in <root>/<name>/."""
    return settings.from_environ().lab_dir


def state_path(lab_dir: Path) -> Path:
    return lab_dir / STATE_FILE


def save(record: LabRecord) -> None:
    """Write the state file atomically (0600: it names the private key's path)."""
    atomic_write(state_path(Path(record.dir)), record.model_dump_json(indent=2).encode(), mode=0o600)


@contextmanager
def power_lock(lab_dir: Path) -> Iterator[None]:
    """Hold the lab's power lock: one power-off or power-on at a time per lab, across processes.

    Two concurrent power-ons of one node would both start nspawn and the loser's PID could overwrite the
    winner's in the record, leaving a running node nobody recorded.
    """
    try:
        fh = (lab_dir / POWER_LOCK).open("a")
    except FileNotFoundError as exc:
        raise BadInput(f"no lab at {lab_dir} (it was brought down)", hint="`kubeplay lab status` lists labs") from exc
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load(lab_dir: Path) -> LabRecord:
    """Read a lab's state file; raise BadInput if there is no such lab."""
    path = state_path(lab_dir)
    if not path.is_file():
        raise BadInput(f"no lab at {lab_dir} (no {STATE_FILE})", hint="start one with `kubeplay lab up --nodes N`")
    try:
        return LabRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, OSError) as exc:
        raise LabStateError(f"lab state {path} is unreadable: {exc}") from exc


def list_labs(root: Path) -> list[LabRecord]:
    """Every lab with a readable state file under `root`, by name."""
    if not root.is_dir():
        return []
    labs = []
    for child in sorted(root.iterdir()):
        if state_path(child).is_file():
            try:
                labs.append(load(child))
            except KubeplayError:
                continue
    return labs
