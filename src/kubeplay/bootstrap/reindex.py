"""The served OS repos' indexes over the union of every served bundle, signed by the deploy node's key.

Each bundle's repo is signed at build time by a throwaway key; once two bundles are served, no bundle
key can sign the union. The deploy node therefore has its own key (made at its first install, kept in
/etc/kubeplay/repo-gnupg, public half at served/repos/kubeplay-archive-keyring.gpg), and nodes trust that
one key from their first node prep on: adding or pruning versions never re-keys a node.

apt: Packages of every version (kept in versions/<identity>/repo-indexes/), merged per suite and arch,
written with by-hash copies so a client holding the previous InRelease still finds what it names.
rpm: createrepo_c over every rpm of the union, written beside the live repodata and swapped in; the
previous metadata files stay in the new repodata (dnf may be reading them), modules merged.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kubeplay.bootstrap.served import REPO_INDEXES
from kubeplay.bundle.manifest import SUMS_NAME, read_sha256sums
from kubeplay.osrepo.apt_repo import AptRepoContent, write_apt_repo
from kubeplay.osrepo.signing import KEYRING_NAME, BundleSigner

SIGNER_UID = "kubeplay deploy node repository signing key <kubeplay@localhost>"


def _paragraphs(text: str) -> list[str]:
    return [p.strip("\n") + "\n" for p in text.split("\n\n") if p.strip()]


def _os_release(manifests: Iterable[dict[str, Any]], repo_rel: str) -> str:
    for m in manifests:
        for r in m.get("os_repos") or []:
            if isinstance(r, dict) and r.get("path") == repo_rel:
                return str(r.get("release", ""))
    return repo_rel.rsplit("/", 1)[-1]


def reindex_apt(root: Path, version_dirs: list[Path], manifests: list[dict[str, Any]], signer: BundleSigner) -> int:
    """Rewrite every served apt repo's dists/ from the versions' own Packages; return repos written."""
    # (repo path, suite) -> arch -> paragraphs
    merged: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for vdir in version_dirs:
        base = vdir / REPO_INDEXES
        for packages in sorted(base.glob("repos/apt/*/*/dists/*/*/binary-*/Packages")):
            rel = packages.relative_to(base).parts  # repos apt distro codename dists suite comp binary-arch Packages
            repo_rel = "/".join(rel[:4])
            suite, arch = rel[5], rel[7].removeprefix("binary-")
            merged[(repo_rel, suite)][arch].extend(_paragraphs(packages.read_text(encoding="utf-8")))
    for (repo_rel, suite), by_arch in sorted(merged.items()):
        distro = repo_rel.split("/")[2]
        content = AptRepoContent(distro, _os_release(manifests, repo_rel), suite, dict(by_arch))
        write_apt_repo(root / repo_rel, content, signer, by_hash=True)
    return len(merged)


def _modules_text(version_dirs: list[Path], basearch_rel: str) -> str | None:
    docs: list[str] = []
    for vdir in version_dirs:
        for f in sorted((vdir / REPO_INDEXES / basearch_rel / "repodata").glob("*modules.yaml*")):
            data = f.read_bytes()
            text = (gzip.decompress(data) if f.name.endswith(".gz") else data).decode("utf-8")
            for raw in text.split("\n---"):
                doc = raw.strip().removeprefix("---").strip()
                if doc and doc != "..." and doc not in docs:
                    docs.append(doc)
    if not docs:
        return None
    return "".join(f"---\n{d.removesuffix('...').strip()}\n...\n" for d in docs)


def _swap_repodata(repo: Path, new: Path) -> None:
    """Replace repo/repodata by `new`, keeping the old metadata files (not repomd.xml) inside the new one."""
    old = repo / "repodata"
    if old.is_dir():
        for f in old.iterdir():
            if f.is_file() and not f.name.startswith("repomd.xml") and not (new / f.name).exists():
                os.link(f, new / f.name)
    parked = repo / ".repodata.old"
    shutil.rmtree(parked, ignore_errors=True)
    if old.exists():
        os.replace(old, parked)
    os.replace(new, old)
    shutil.rmtree(parked, ignore_errors=True)


def _listed_rpms(version_dirs: list[Path]) -> set[str]:
    """The rpms the versions list (not whatever lies in the directory: a prune deletes after re-indexing)."""
    listed: set[str] = set()
    for vdir in version_dirs:
        if (vdir / SUMS_NAME).is_file():
            listed |= {
                r for r in read_sha256sums(vdir / SUMS_NAME) if r.startswith("repos/rpm/") and r.endswith(".rpm")
            }
    return listed


def reindex_rpm(root: Path, version_dirs: list[Path], signer: BundleSigner) -> int:
    """Rewrite every served rpm repo's repodata over the rpms the versions list; return repos written."""
    import createrepo_c as cr  # noqa: PLC0415  (not needed on apt-only deploy nodes)

    listed = _listed_rpms(version_dirs)
    count = 0
    for basearch in sorted(p for p in root.glob("repos/rpm/*/*/*") if p.is_dir() and not p.name.startswith(".")):
        prefix = basearch.relative_to(root).as_posix() + "/"
        rpms = sorted(root / rel for rel in listed if rel.startswith(prefix) and (root / rel).is_file())
        if not rpms:
            continue
        modules = _modules_text(version_dirs, basearch.relative_to(root).as_posix())
        with tempfile.TemporaryDirectory(prefix=".reindex-", dir=basearch) as tmp:
            work = Path(tmp)
            for top in {r.relative_to(basearch).parts[0] for r in rpms}:
                (work / top).symlink_to(basearch / top)
            with cr.RepositoryWriter(str(work), compression=cr.GZ_COMPRESSION, checksum_type=cr.SHA256) as writer:
                writer.set_num_of_pkgs(len(rpms))
                for rpm in rpms:
                    writer.add_pkg_from_file(str(work / rpm.relative_to(basearch)))
                if modules is not None:
                    mpath = work / "modules.yaml"
                    mpath.write_text(modules, encoding="utf-8")
                    writer.add_repomd_metadata("modules", str(mpath))
            signer.detach_sign(work / "repodata" / "repomd.xml", work / "repodata" / "repomd.xml.asc")
            _swap_repodata(basearch, work / "repodata")
        count += 1
    return count


def reindex(root: Path, version_dirs: list[Path], manifests: list[dict[str, Any]], key_home: Path) -> str:
    """Re-index every served repo over the union and publish the deploy node's public key."""
    if not any(root.glob("repos/apt/*/*")) and not any(root.glob("repos/rpm/*/*")):
        return "no OS repos served"
    with BundleSigner(SIGNER_UID, home=key_home) as signer:
        apt = reindex_apt(root, version_dirs, manifests, signer)
        rpm = reindex_rpm(root, version_dirs, signer) if any(root.glob("repos/rpm/*")) else 0
        repos = root / "repos"
        if repos.is_dir():
            key = signer.public_key()
            dest = repos / KEYRING_NAME
            if not dest.is_file() or dest.read_bytes() != key:
                tmp = dest.with_name(dest.name + ".part")
                tmp.write_bytes(key)
                tmp.replace(dest)
        return f"{apt} apt and {rpm} rpm repo(s) re-indexed, signed by {signer.fingerprint[-16:]}"
