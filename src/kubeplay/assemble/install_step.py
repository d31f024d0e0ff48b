"""The build's install files (install.sh, config-sample.yaml, wheels/), with wheels/ kept when nothing changed.

Resolving wheels/ builds kubeplay's own wheel and runs pip against PyPI per (Python, arch) target, which
takes seconds even when nothing is new, while an unchanged re-run should do no work. So the inputs of that
step (kubeplay's version and, in a source checkout, the size and mtime of its files; the kubespray tree;
the arches and Python versions; KUBEPLAY_WHEEL) and the sha256 of every file it left in wheels/ are
recorded in the build state. A re-run with the same inputs whose wheels/ still holds exactly those bytes
(checked through the stat-keyed verified cache, so without reading them again) keeps wheels/ as it is.
Remove wheels/ to have it resolved again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from kubeplay import __version__, settings
from kubeplay.bundle.install_files import add_install_files
from kubeplay.bundle.wheels import DEFAULT_PYTHONS, WHEELS_DIR, find_source_tree
from kubeplay.fetch.verified import VerifiedCache
from kubeplay.state import atomic_write, input_hash

RECORD = "wheels.json"


def source_fingerprint(root: Path | None) -> list[tuple[str, int, int]] | None:
    """(path, size, mtime_ns) of kubeplay's source files in a checkout; None when running from a wheel."""
    if root is None:
        return None
    found: list[tuple[str, int, int]] = []
    for dirpath, dirnames, names in os.walk(root / "src" / "kubeplay"):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            found.append((os.path.relpath(path, root), st.st_size, st.st_mtime_ns))
    st = (root / "pyproject.toml").stat()
    found.append(("pyproject.toml", st.st_size, st.st_mtime_ns))
    return found


def wheels_inputs(kubespray_identity: str, arches: Sequence[str], pythons: Sequence[str] = DEFAULT_PYTHONS) -> str:
    """Hash of everything the content of wheels/ depends on (besides what PyPI serves)."""
    own_wheel = settings.from_environ().kubeplay_wheel
    own = str(own_wheel) if own_wheel else None
    own_stat = None
    if own:
        with suppress(OSError):
            st = Path(own).stat()
            own_stat = (st.st_size, st.st_mtime_ns)
    return input_hash(
        {
            "kubeplay": __version__,
            "source": source_fingerprint(find_source_tree()),
            "kubespray": kubespray_identity,
            "arches": list(arches),
            "pythons": list(pythons),
            "kubeplay_wheel": [own, own_stat],
        }
    )


def _wheel_files(bundle_dir: Path) -> list[Path]:
    top = bundle_dir / WHEELS_DIR
    return sorted(p for p in top.iterdir() if p.is_file()) if top.is_dir() else []


def wheels_unchanged(bundle_dir: Path, record: Path, key: str, cache: VerifiedCache) -> bool:
    """True when wheels/ was made from inputs `key` and still holds exactly the recorded files."""
    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    files = saved.get("files") if isinstance(saved, dict) and saved.get("key") == key else None
    if not isinstance(files, dict) or not files:
        return False
    present = _wheel_files(bundle_dir)
    if sorted(p.name for p in present) != sorted(files):
        return False
    return all(cache.ensure(p, ("sha256",)).get("sha256") == files[p.name] for p in present)


def add_install_files_kept(
    bundle_dir: Path,
    state_dir: Path,
    cache: VerifiedCache,
    *,
    kube_version: str,
    arches: Sequence[str],
    registry_project: str,
    kubespray_identity: str,
    with_wheels: bool,
    pythons: Sequence[str] = DEFAULT_PYTHONS,
    deploy_table: str | None = None,
) -> bool:
    """add_install_files, skipping the wheels/ resolution when unchanged; return whether wheels/ was kept."""
    record = state_dir / RECORD
    key = wheels_inputs(kubespray_identity, arches, pythons) if with_wheels else ""
    keep = with_wheels and wheels_unchanged(bundle_dir, record, key, cache)
    add_install_files(
        bundle_dir,
        kube_version=kube_version,
        arches=list(arches),
        registry_project=registry_project,
        kubespray_dir=bundle_dir / "kubespray",
        with_wheels=with_wheels and not keep,
        pythons=pythons,
        deploy_table=deploy_table,
    )
    if with_wheels and not keep:
        files = {p.name: cache.ensure(p, ("sha256",))["sha256"] for p in _wheel_files(bundle_dir)}
        atomic_write(record, json.dumps({"key": key, "files": files}, sort_keys=True).encode())
    cache.save()
    return keep
