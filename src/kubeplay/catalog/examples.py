"""Where `kubeplay demo` and the tests find kubespray trees: ../shared releases, else the built-in example."""

from __future__ import annotations

import re
from pathlib import Path

import kubeplay
from kubeplay import settings

RELEASE_NAME_RE = re.compile(r"kubespray-v(\d+)\.(\d+)\.(\d+)\.tar\.gz$")


def example_tree_path() -> Path:
    """The small kubespray-shaped tree shipped in kubeplay.lab (unit tests and the demo fallback)."""
    return Path(kubeplay.__file__).resolve().parent / "lab" / "kubespray_example"


def shared_dir() -> Path:
    """$KUBEPLAY_SHARED, else `../shared` next to the repository this package runs from."""
    if shared := settings.from_environ().shared:
        return shared
    return (Path(kubeplay.__file__).resolve().parents[2] / ".." / "shared").resolve()


def newest_release_archive(shared: Path | None = None) -> Path | None:
    """The newest `kubespray-vX.Y.Z.tar.gz` under <shared>/upstream/kubespray, or None."""
    folder = (shared or shared_dir()) / "upstream" / "kubespray"
    if not folder.is_dir():
        return None
    found = []
    for path in folder.glob("kubespray-v*.tar.gz"):
        match = RELEASE_NAME_RE.search(path.name)
        if match:
            found.append((tuple(int(x) for x in match.groups()), path))
    return max(found)[1] if found else None
