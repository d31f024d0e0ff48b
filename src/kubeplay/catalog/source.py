"""A kubespray source tree: a directory or a GitHub-style release archive, its layout and version.

Two layouts are understood:
- v2.28+: roles/kubespray_defaults/{defaults,vars}/main/*.yml (checksums are role *vars*);
- v2.24-v2.27: roles/kubespray-defaults/defaults/main/*.yml (checksums are role *defaults*) and vars/main.yml.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from kubeplay import settings
from kubeplay.errors import ArchiveDigestMismatch, CatalogError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
NEW_LAYOUT = "kubespray_defaults"
OLD_LAYOUT = "kubespray-defaults"
REQUIRED_FILES = {
    NEW_LAYOUT: ("defaults/main/main.yml", "defaults/main/download.yml", "vars/main/checksums.yml"),
    OLD_LAYOUT: ("defaults/main/main.yml", "defaults/main/download.yml", "defaults/main/checksums.yml"),
}
# Roles whose defaults and vars Ansible has in scope in contrib/offline/generate_list.yml.
ROLES_LOADED = ("download",)


@dataclass(frozen=True)
class KubesprayTree:
    """An extracted kubespray source tree."""

    root: Path
    layout: str
    version: str | None = None
    sha256: str | None = None

    @property
    def defaults_role(self) -> Path:
        return self.root / "roles" / self.layout

    @property
    def variable_roles(self) -> tuple[Path, ...]:
        """The roles whose defaults and vars the evaluator loads, in Ansible's play order."""
        return (self.defaults_role, *(self.root / "roles" / name for name in ROLES_LOADED))

    @property
    def label(self) -> str:
        return f"kubespray {self.version}" if self.version else f"kubespray tree {self.root}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_archive(path: Path) -> bool:
    return path.name.endswith(ARCHIVE_SUFFIXES)


def archive_cache(cache_dir: Path | None) -> Path:
    """Where kubespray archives and their unpacked trees are kept: `cache_dir`/kubespray, else the cache root's."""
    return cache_dir / "kubespray" if cache_dir else settings.from_environ().cache.kubespray


def load_tree(path: Path, expected_sha256: str | None = None, cache_dir: Path | None = None) -> KubesprayTree:
    """Open a kubespray directory or release archive; return the tree with its layout and version.

    Archives are checked against `expected_sha256` (ArchiveDigestMismatch names both digests) and
    extracted once into `<cache_dir>/kubespray/<sha256>/`. Raise CatalogError when the path is
    missing or the tree lacks the files kubeplay reads (the message names them).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CatalogError(
            f"{path}: no such file or directory", hint="point kubespray.source at a directory or .tar.gz"
        )
    sha256 = None
    if path.is_file():
        if not is_archive(path):
            raise CatalogError(f"{path}: not a directory or a .tar.gz release archive")
        sha256 = file_sha256(path)
        if expected_sha256 is not None:
            expected = expected_sha256.lower().removeprefix("sha256:")
            if expected != sha256:
                raise ArchiveDigestMismatch(
                    f"{path}: sha256 mismatch: expected {expected}, actual {sha256}",
                    hint="download the archive again, or fix kubespray.sha256 in bundle.yaml if the release changed",
                )
        root = extract_archive(path, sha256, archive_cache(cache_dir))
    else:
        root = find_root(path)
    layout = detect_layout(root)
    return KubesprayTree(root=root, layout=layout, version=detect_version(root), sha256=sha256)


def find_root(path: Path) -> Path:
    if (path / "roles").is_dir():
        return path
    children = [p for p in path.iterdir() if p.is_dir()] if path.is_dir() else []
    if len(children) == 1 and (children[0] / "roles").is_dir():
        return children[0]
    raise CatalogError(
        f"{path}: not a kubespray tree (no roles/ directory)",
        hint="point kubespray.source at the top directory of a kubespray checkout or release",
    )


def detect_layout(root: Path) -> str:
    for layout in (NEW_LAYOUT, OLD_LAYOUT):
        role = root / "roles" / layout
        if (role / "defaults" / "main").is_dir():
            missing = [name for name in REQUIRED_FILES[layout] if not (role / name).is_file()]
            if missing:
                listed = ", ".join(f"roles/{layout}/{name}" for name in missing)
                raise CatalogError(f"{root}: kubespray tree is missing {listed}", hint="is the tree complete?")
            return layout
    raise CatalogError(
        f"{root}: kubespray tree is missing roles/{NEW_LAYOUT}/defaults/main/ (v2.28+) "
        f"and roles/{OLD_LAYOUT}/defaults/main/ (v2.24-v2.27)",
        hint="kubeplay supports kubespray v2.24 and later",
    )


def detect_version(root: Path) -> str | None:
    galaxy = root / "galaxy.yml"
    if galaxy.is_file():
        try:
            data = yaml.safe_load(galaxy.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            data = None
        if isinstance(data, dict) and data.get("version"):
            return "v" + str(data["version"]).removeprefix("v")
    match = re.fullmatch(r"kubespray-v?(\d+\.\d+\.\d+.*)", root.name)
    return f"v{match.group(1)}" if match else None


_STAGING = re.compile(r"\.[0-9a-f]{12}-")  # extract_archive's staging trees: .<sha256[:12]>-<random>


def extract_archive(archive: Path, sha256: str, cache: Path) -> Path:
    """Extract once into `cache/<sha256>/`; return the single top directory inside it.

    The tree is extracted into a hidden staging directory and renamed into place when complete; a kill
    (SIGKILL) can leave that staging tree behind: `remove_unfinished_extractions` removes such trees.
    """
    target = cache / sha256
    if not (target / ".complete").exists():
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache, prefix=f".{sha256[:12]}-"))
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(staging, filter="data")
            (staging / ".complete").write_text(archive.name + "\n", encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        except (tarfile.TarError, OSError, EOFError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise CatalogError(f"{archive}: cannot extract: {exc}", hint="is it a complete .tar.gz?") from exc
        except BaseException:  # Ctrl-C: leave no half tree
            shutil.rmtree(staging, ignore_errors=True)
            raise
    tops = [p for p in target.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise CatalogError(f"{archive}: expected one top-level directory, found {len(tops)}")
    return tops[0]


def remove_unfinished_extractions(cache: Path) -> int:
    """Remove the staging trees killed extractions left in `cache`; return how many there were.

    Call it only while holding the lock that keeps other extractions out of `cache` (a build's lock for
    its own `.kubeplay-build/cache/kubespray`): a live extraction's staging tree looks the same.
    """
    if not cache.is_dir():
        return 0
    found = [p for p in cache.iterdir() if _STAGING.match(p.name) and p.is_dir() and not p.is_symlink()]
    for path in found:
        shutil.rmtree(path, ignore_errors=True)
    return len(found)
