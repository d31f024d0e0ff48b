"""What a cluster runs: <state-dir>/cluster.json, written by deploy and upgrade, read by every cluster command.

It names the Kubernetes and kubespray versions the nodes were given, the bundle's identity (the sha256 of
its kubeplay.json) and when; an upgrade that started and has not finished says where it is going, and
earlier records are kept as history. Each state directory has its own: one cluster each.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubeplay.bootstrap.bundleinfo import BundleFacts
from kubeplay.bundle.manifest import MANIFEST_NAME
from kubeplay.errors import BadInput
from kubeplay.state import atomic_write

CLUSTER_RECORD = "cluster.json"


@dataclass(frozen=True)
class ClusterRecord:
    """What the last deploy or upgrade from a state directory put on the nodes."""

    kube_version: str
    kubespray_version: str
    bundle: str  # identity: sha256 of the bundle's kubeplay.json
    at: str  # when (UTC, ISO 8601)
    by: str  # "deploy" or "upgrade"
    complete: bool = False  # every step of that command finished
    upgrading_to: str | None = None  # an upgrade that started and has not finished
    history: list[dict[str, Any]] = field(default_factory=list)


def record_path(state_dir: Path) -> Path:
    return state_dir / CLUSTER_RECORD


def read_record(state_dir: Path) -> ClusterRecord | None:
    """The cluster record in `state_dir`, None when no deploy was recorded; BadInput when unreadable."""
    path = record_path(state_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ClusterRecord(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise BadInput(
            f"{path}: unreadable cluster record: {exc}",
            hint="restore it, or delete it and name the version with --version (deploy) or --bundle",
        ) from None


def write_record(state_dir: Path, record: ClusterRecord) -> None:
    atomic_write(record_path(state_dir), json.dumps(asdict(record), indent=2).encode(), mode=0o600)


def bundle_identity(bundle: BundleFacts) -> str:
    """sha256 of the bundle's kubeplay.json (a served version keeps it in its version directory)."""
    path = (bundle.kubespray_root or bundle.root) / MANIFEST_NAME
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def kubespray_version(bundle: BundleFacts) -> str:
    spray = bundle.manifest.get("kubespray") or {}
    return str(spray.get("version", "")) if isinstance(spray, dict) else ""


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def record_started(state_dir: Path, bundle: BundleFacts, by: str) -> ClusterRecord:
    """Record that `by` (deploy) started putting `bundle` on the nodes; return the record written."""
    old = read_record(state_dir)
    record = ClusterRecord(
        kube_version=bundle.kube_version,
        kubespray_version=kubespray_version(bundle),
        bundle=bundle_identity(bundle),
        at=now(),
        by=by,
        complete=False,
        history=_history(old, bundle.kube_version),
    )
    write_record(state_dir, record)
    return record


def record_finished(state_dir: Path) -> None:
    old = read_record(state_dir)
    if old is not None:
        write_record(state_dir, ClusterRecord(**{**asdict(old), "complete": True, "at": now()}))


def record_upgrade(state_dir: Path, target: BundleFacts, *, finished: bool) -> None:
    """Mark an upgrade to `target` started (the record keeps the old version) or finished (it says the new one)."""
    old = read_record(state_dir)
    if old is None:
        return
    if not finished:
        write_record(state_dir, ClusterRecord(**{**asdict(old), "upgrading_to": target.kube_version}))
        return
    write_record(
        state_dir,
        ClusterRecord(
            kube_version=target.kube_version,
            kubespray_version=kubespray_version(target),
            bundle=bundle_identity(target),
            at=now(),
            by="upgrade",
            complete=True,
            history=_history(old),
        ),
    )


def _history(old: ClusterRecord | None, new_version: str | None = None) -> list[dict[str, Any]]:
    if old is None:
        return []
    if new_version is not None and old.kube_version == new_version:
        return old.history
    entry = {k: v for k, v in asdict(old).items() if k not in ("history", "upgrading_to")}
    return [*old.history, entry][-20:]
