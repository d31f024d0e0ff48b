"""Removing what a lab recorded, one item at a time, refusing anything that is not plainly the lab's own."""

from __future__ import annotations

import shutil
from pathlib import Path

from kubeplay.errors import TeardownRefused
from kubeplay.lab import network
from kubeplay.lab.record import Resource


def remove_resource(res: Resource, lab_dir: Path) -> bool:
    """Remove one recorded namespace, link or directory if it still exists; return whether it did.

    Raises TeardownRefused for a directory outside the lab directory or with something mounted inside.
    """
    if res.kind == "netns":
        return network.delete_netns(res.name)
    if res.kind == "link":
        return network.delete_link(res.netns or "", res.name)
    path = Path(res.name)
    if not path.exists():
        return False
    if path != lab_dir and not path.is_relative_to(lab_dir):
        raise TeardownRefused(f"refusing to remove {path}: outside the lab directory {lab_dir}")
    mounts = mounts_under(path)
    if mounts:
        raise TeardownRefused(f"refusing to remove {path}: still mounted there: {', '.join(mounts)}")
    shutil.rmtree(path)
    return True


def mounts_under(path: Path) -> list[str]:
    # Removing a tree that still has a bind mount inside would delete through it into someone else's files.
    prefix = str(path).rstrip("/") + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(path) or point.startswith(prefix):
            found.append(point)
    return found
