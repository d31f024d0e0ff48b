"""The record of what install created, so uninstall removes exactly that and nothing else.

An item is recorded *before* it is created: a `kill -9` between the two leaves a record of something
that may not exist, which uninstall tolerates; it never leaves something created but unrecorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kubeplay.state import atomic_write

Kind = Literal["file", "dir", "marker_block", "unit", "package", "trust", "dropin"]


@dataclass(frozen=True)
class Item:
    kind: Kind
    target: str
    detail: str = ""

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "target": self.target, "detail": self.detail}


@dataclass
class InstallRecord:
    path: Path
    items: list[Item] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> InstallRecord:
        rec = cls(path)
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            rec.items = [Item(i["kind"], i["target"], i.get("detail", "")) for i in data.get("items", [])]
        return rec

    def add(self, kind: Kind, target: str | Path, detail: str = "") -> None:
        """Record an item (idempotent) and persist immediately."""
        item = Item(kind, str(target), detail)
        if item not in self.items:
            self.items.append(item)
            self._save()

    def remove(self, item: Item) -> None:
        if item in self.items:
            self.items.remove(item)
            self._save()

    def of_kind(self, kind: Kind) -> list[Item]:
        return [i for i in self.items if i.kind == kind]

    def _save(self) -> None:
        body = json.dumps({"items": [i.as_json() for i in self.items]}, indent=2).encode()
        atomic_write(self.path, body, mode=0o600)


def ensure_dir(record: InstallRecord, path: Path, mode: int = 0o755) -> None:
    """Create `path` and any missing parents, recording each one created (uninstall removes them if empty)."""
    # Decide what is missing before recording: the record itself lives in the state dir and creates it.
    missing = [p for p in [*reversed(path.parents), path] if not p.exists()]
    for p in missing:
        record.add("dir", p)
    for p in missing:
        p.mkdir(mode=mode, exist_ok=True)


def write_owned(record: InstallRecord, path: Path, data: bytes, mode: int = 0o644) -> bool:
    """Write a file install owns (recorded first). Return True when its content changed."""
    if path.exists() and path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
        record.add("file", path)
        return False
    ensure_dir(record, path.parent)
    record.add("file", path)
    atomic_write(path, data, mode=mode)
    return True
