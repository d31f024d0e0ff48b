"""Find the kubespray tree bundle.yaml names: a local directory or archive, or a URL already fetched.

Downloading is not the catalog's job (it never touches the network): a caller passes a `downloader`
(kubeplay.fetch provides one) and `open_release` hands it the URL, the expected sha256 and a directory.
Without one, a URL source works only when its archive is already in kubeplay's cache.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from kubeplay.catalog.source import KubesprayTree, archive_cache, load_tree
from kubeplay.config.bundle import BundleSpec
from kubeplay.errors import CatalogError

# (url, expected sha256 or None, directory to put it in) -> path of the downloaded, verified archive
Downloader = Callable[[str, str | None, Path], Path]

VERSION_IN_NAME_RE = re.compile(r"v?(\d+\.\d+\.\d+(?:[-+][\w.]+)?)(?:\.tar\.gz|\.tgz)?$")


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def version_from_source(source: str) -> str | None:
    """`.../refs/tags/v2.31.0.tar.gz` or `kubespray-v2.31.0.tar.gz` -> `v2.31.0`."""
    name = source.rstrip("/").rsplit("/", 1)[-1]
    match = VERSION_IN_NAME_RE.search(name)
    return f"v{match.group(1)}" if match else None


def open_release(
    spec: BundleSpec, *, downloader: Downloader | None = None, cache_dir: Path | None = None
) -> KubesprayTree:
    """The tree for spec.kubespray: verified against its sha256 and its declared version.

    Raise CatalogError (exit 2) when a URL source is neither cached nor downloadable here, when the
    archive's digest differs, or when the tree's own version is not the one bundle.yaml declares.
    """
    ref = spec.kubespray
    cache = archive_cache(cache_dir)
    if is_url(ref.source):
        extracted = cache / ref.sha256 if ref.sha256 else None
        if extracted is not None and (extracted / ".complete").exists():
            tree = load_tree(extracted)
            tree = KubesprayTree(root=tree.root, layout=tree.layout, version=tree.version, sha256=ref.sha256)
        elif downloader is not None:
            archive = downloader(ref.source, ref.sha256, cache / "archives")
            tree = load_tree(archive, ref.sha256, cache_dir=cache.parent)
        else:
            raise CatalogError(
                f"kubespray.source is a URL ({ref.source}); `kubeplay plan` needs the release archive locally for now",
                hint="download it (e.g. curl -LO <url>), then set kubespray.source to the file and kubespray.sha256 "
                "to its digest",
            )
    else:
        tree = load_tree(spec.resolve(ref.source), ref.sha256, cache_dir=cache.parent)
    if tree.version and ref.version and tree.version.removeprefix("v") != ref.version.removeprefix("v"):
        raise CatalogError(
            f"bundle.yaml says kubespray {ref.version} but {tree.root} is {tree.version}",
            hint="fix kubespray.version or kubespray.source in bundle.yaml",
        )
    return tree
