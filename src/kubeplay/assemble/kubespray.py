"""The kubespray release in the bundle: fetched (or read locally), checked against its sha256, copied as is.

A URL source is downloaded through the mirrors into the build state and must match `kubespray.sha256`
(GitHub's archive and a `git archive` of the same tag differ byte-wise: one sha256 never fits both).
A local archive is checked the same way; a local directory is taken as it is. The tree lands in
`<bundle>/kubespray/` with its files unchanged; in-tree symlinks become copies of their targets
(bundles hold regular files only), symlinks leading out of the tree are left out with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.parse
from pathlib import Path

from kubeplay.bundle.manifest import KubesprayRecord
from kubeplay.catalog.model import Checksum
from kubeplay.catalog.source import KubesprayTree, load_tree, remove_unfinished_extractions
from kubeplay.config.bundle import BundleSpec
from kubeplay.console import Output
from kubeplay.errors import BadInput, FetchError
from kubeplay.fetch.http import Downloader, DownloadItem
from kubeplay.fetch.mirrors import redact
from kubeplay.state import atomic_write

BUNDLE_DIR = "kubespray"


def is_url(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme in ("http", "https")


def obtain_tree(spec: BundleSpec, state_dir: Path, downloader: Downloader) -> tuple[KubesprayTree, KubesprayRecord]:
    """The kubespray tree for `spec`, downloading the archive first when the source is a URL.

    Called under the build lock of `state_dir`'s bundle: extractions a killed build left half done in its
    cache are removed first (no live build can be extracting there while we hold the lock).
    """
    remove_unfinished_extractions(state_dir / "cache" / "kubespray")
    ref = spec.kubespray
    if is_url(ref.source):
        if ref.sha256 is None:
            raise BadInput(
                "kubespray.sha256 is required when kubespray.source is a URL",
                hint="sha256sum the release archive and put the digest in bundle.yaml",
            )
        name = Path(urllib.parse.urlsplit(ref.source).path).name or "kubespray.tar.gz"
        if not name.endswith((".tar.gz", ".tgz")):
            name = f"kubespray-{ref.version}.tar.gz"
        archive = state_dir / "kubespray" / ref.sha256 / name
        item = DownloadItem(ref.source, archive, Checksum(algorithm="sha256", hex=ref.sha256), label="kubespray.source")
        report = downloader.download_all([item], title="kubespray")
        if report.failed:
            failure = report.failed[0]
            raise FetchError(f"kubespray source {failure.url}: {failure.reason}", hint="check kubespray.source")
        path = archive
    else:
        path = spec.resolve(ref.source)
        if path.is_file() and ref.sha256 is None:
            raise BadInput("kubespray.sha256 is required for an archive source", hint="sha256sum it into bundle.yaml")
    tree = load_tree(path, ref.sha256, cache_dir=state_dir / "cache")
    record = KubesprayRecord(
        version=tree.version or ref.version,
        source=redact(ref.source),
        sha256=tree.sha256 or ref.sha256,
    )
    return tree, record


def _fingerprint(root: Path) -> str:
    """Cheap identity of a directory tree: paths, sizes and mtimes."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            st = os.lstat(os.path.join(dirpath, name))
            h.update(f"{os.path.join(dirpath, name)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def tree_identity(tree: KubesprayTree) -> str:
    """The archive's sha256, or a fingerprint of a local directory's paths, sizes and mtimes."""
    return tree.sha256 or _fingerprint(tree.root)


def copy_tree(tree: KubesprayTree, bundle_dir: Path, state_dir: Path, identity: str, *, out: Output) -> Path:
    """Copy the tree into `<bundle>/kubespray/` unless the same tree is already there; return that dir."""
    target = bundle_dir / BUNDLE_DIR
    marker = state_dir / "kubespray.json"
    if target.is_dir() and marker.is_file():
        try:
            if json.loads(marker.read_text(encoding="utf-8")).get("identity") == identity:
                return target
        except ValueError:
            pass
    staging = state_dir / "kubespray.new"
    shutil.rmtree(staging, ignore_errors=True)
    outside: list[str] = []
    root = tree.root.resolve()

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set()
        for name in names:
            path = Path(directory) / name
            if path.is_symlink():
                real = path.resolve()
                if not real.exists() or not real.is_relative_to(root):
                    skipped.add(name)
                    outside.append(str(path.relative_to(tree.root)))
        return skipped

    shutil.copytree(tree.root, staging, symlinks=False, ignore=ignore)
    if outside:
        out.warn(f"kubespray: left out {len(outside)} symlink(s) leading outside the tree: {outside[0]}")
    old = state_dir / "kubespray.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    atomic_write(marker, json.dumps({"identity": identity}).encode())
    return target
