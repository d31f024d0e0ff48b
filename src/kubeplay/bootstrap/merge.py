"""Add a bundle (full, or a delta completed from what is already served) to the deploy node's served set.

Nothing served is ever missing while this runs, and a `kill -9` at any point leaves a state that serves
everything it served before; running the install again finishes the merge:

1. plan: the bundle's complete content list (its SHA256SUMS, or a delta's delta.json); for a delta, the
   base must be served (else BadInput naming both identities) and every digest it leaves out must be
   found in the served set (else BadInput naming the paths). A path already served with other content
   is refused, except the few that are indexes by nature (a registry tag, a chart index, repo metadata).
2. space: what must be copied (not hard-linked) and rebuilt from patches, against the free space of the
   served file system, before anything is written.
3. stage: every new file linked, copied or rebuilt into served/.staging/<identity>/, digest-checked
   (a delta's carried files and its patched files are hashed, and so is anything copied; what is taken
   from the served set was checked when it was added, and its size is compared);
   ENOSPC here leaves the served set as it was.
4. commit: staged files renamed into place (blobs, then manifests, then tags: a tag never points at
   content that is not there yet), the version directory moved in, the OS repos re-indexed over the
   union and signed by the deploy node's key, and last `version.json`: the version is served.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kubeplay.bootstrap.paths import HostPaths
from kubeplay.bootstrap.reindex import reindex
from kubeplay.bootstrap.served import (
    REPO_INDEXES,
    VERSION_RECORD,
    VERSIONS_DIR,
    ServedVersion,
    is_rebuilt_path,
    served_location,
    served_versions,
)
from kubeplay.bundle.delta import DeltaRecord, full_sums_text, read_delta
from kubeplay.bundle.inventory import Entry, identity_of
from kubeplay.bundle.manifest import MANIFEST_NAME, SUMS_NAME, read_sha256sums, sha256_file
from kubeplay.console import human_bytes
from kubeplay.errors import BadInput, BundleError
from kubeplay.state import atomic_write

STAGING_DIR = ".staging"
SPACE_MARGIN = 16 << 20
_CHUNK = 1 << 20
REPO_KEY_HOME = "repo-gnupg"


def is_index_path(rel: str) -> bool:
    """Paths whose served content is the newest bundle's (a tag, a chart index) or is rebuilt (repo
    metadata and keys): never a conflict between two bundles."""
    parts = rel.split("/")
    if rel.startswith("registry/") and "/_manifests/tags/" in rel and rel.endswith("/current/link"):
        return True
    if rel == "files/charts/index.yaml":
        return True
    return is_rebuilt_path(rel) or (parts[0] == "repos" and parts[-1].startswith("RPM-GPG-KEY"))


def _commit_rank(rel: str) -> int:
    """Order of renames into place: content before what points at it."""
    if rel.startswith("registry/"):
        if "/blobs/" in rel:
            return 0
        if "/_manifests/tags/" in rel:
            return 3 if rel.endswith("/current/link") else 2
        return 1
    return 1


@dataclass
class ServedIndex:
    """What the served set holds: path -> digest (union paths and each version's own), digest -> a file."""

    by_path: dict[str, str] = field(default_factory=dict)
    by_digest: dict[str, Path] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)  # union path -> the version that put it there

    @classmethod
    def load(cls, versions: list[ServedVersion]) -> ServedIndex:
        idx = cls()
        for v in versions:
            for rel, digest in read_sha256sums(v.sums_path).items():
                where = v.stored_at(rel)
                if not where.is_relative_to(v.dir):
                    idx.by_path[rel] = digest
                    idx.owner.setdefault(rel, v.kube_version)
                if digest not in idx.by_digest and where.is_file():
                    idx.by_digest[digest] = where
        return idx


@dataclass(frozen=True)
class Source:
    rel: str
    path: Path  # the file to link or copy (from the bundle, or from the served set)
    sha256: str
    size: int
    check: bool  # hash it while staging
    patch: tuple[Path, Path] | None = None  # (base file, patch file) for a file rebuilt from a zstd patch


@dataclass
class MergePlan:
    identity: str
    manifest: dict[str, object]
    kube_version: str
    kubespray_version: str
    content: dict[str, Entry]
    delta: DeltaRecord | None
    sources: list[Source]  # what must be staged
    replaced: list[str]  # index paths whose served content changes
    version_dir: Path
    staging: Path
    repo_indexes: dict[str, Path] = field(default_factory=dict)  # the bundle's own apt/rpm indexes to keep

    @property
    def copy_bytes(self) -> int:
        return sum(s.size for s in self.sources)


@dataclass
class MergeResult:
    identity: str
    kube_version: str
    added: int
    linked: int
    copied: int
    rebuilt: int
    already: bool = False


def _content_of(bundle_dir: Path, delta: DeltaRecord | None) -> dict[str, Entry]:
    if delta is not None:
        return dict(delta.content)
    sums = read_sha256sums(bundle_dir / SUMS_NAME)
    out = {}
    for rel, digest in sums.items():
        p = bundle_dir / rel
        if not p.is_file():
            raise BundleError(
                f"{p}: listed in SHA256SUMS but missing", hint="copy the bundle again, then `kubeplay verify`"
            )
        out[rel] = Entry(sha256=digest, size=p.stat().st_size)
    return out


def _check_base(delta: DeltaRecord, served: list[ServedVersion], bundle_dir: Path) -> None:
    ids = {v.identity for v in served}
    if ids & set(delta.base.identities):
        return
    theirs = ", ".join(f"{i[:12]}" for i in delta.base.identities) or "none"
    versions = "/".join(delta.base.kube_versions) or "?"
    here = ", ".join(f"{v.kube_version} ({v.identity[:12]})" for v in served) or "nothing yet"
    raise BadInput(
        f"{bundle_dir}: a delta for another base: built against {versions} ({theirs}); this deploy node serves {here}",
        hint="install the full bundle instead, or build a delta against this node's "
        "`kubeplay status --inventory -o inventory.json`",
    )


def plan_merge(bundle_dir: Path, paths: HostPaths, verified_sums: str | None = None) -> MergePlan:
    """Everything the merge will do, checked; raise BadInput/BundleError with nothing written.

    `verified_sums`: the sha256 of the SHA256SUMS every file was just checked against (install.sh); when it
    is this bundle's, a delta's carried files are not hashed again, only their listed digests compared."""
    manifest_bytes = (bundle_dir / MANIFEST_NAME).read_bytes()
    identity = identity_of(manifest_bytes)
    manifest = json.loads(manifest_bytes)
    delta = read_delta(bundle_dir)
    served = served_versions(paths)
    if delta is not None:
        _check_base(delta, served, bundle_dir)
        if delta.target.identity != identity:
            raise BundleError(
                f"{bundle_dir}: delta.json names bundle {delta.target.identity[:12]}, kubeplay.json is {identity[:12]}",
                hint="the delta was changed after it was built; build it again",
            )
    content = _content_of(bundle_dir, delta)
    index = ServedIndex.load(served)
    root = paths.served
    version_dir = root / VERSIONS_DIR / identity
    patches = {p.path: p for p in delta.patches} if delta is not None else {}
    sums = read_sha256sums(bundle_dir / SUMS_NAME) if delta is not None else {}
    checked = verified_sums is not None and verified_sums == sha256_file(bundle_dir / SUMS_NAME)
    sources: list[Source] = []
    replaced: list[str] = []
    conflicts: list[str] = []
    missing: list[str] = []
    for rel, entry in sorted(content.items()):
        where = served_location(root, version_dir, rel)
        in_union = not where.is_relative_to(version_dir)
        if in_union:
            have = index.by_path.get(rel)
            if have == entry.sha256 and where.is_file():
                continue
            if have is not None and have != entry.sha256:
                if is_index_path(rel):
                    replaced.append(rel)
                else:
                    conflicts.append(
                        f"{rel}: served as {have[:12]} (Kubernetes {index.owner.get(rel, '?')}), "
                        f"this bundle has {entry.sha256[:12]}"
                    )
                    continue
        if is_rebuilt_path(rel):
            continue  # rebuilt over the union; the version keeps its own apt indexes (below)
        carried = bundle_dir / rel
        if delta is None or (rel in sums and carried.is_file()):
            if delta is not None and sums.get(rel) != entry.sha256:
                raise BundleError(
                    f"{carried}: SHA256SUMS lists {sums.get(rel, '')[:12]}, delta.json {entry.sha256[:12]} for {rel}; "
                    "nothing was added to what this node serves",
                    hint="the delta was changed after it was built; copy it again from the build machine",
                )
            sources.append(Source(rel, carried, entry.sha256, entry.size, check=delta is not None and not checked))
        elif rel in patches:
            p = patches[rel]
            base = index.by_digest.get(p.base_sha256)
            if base is None:
                missing.append(f"{rel} (patch base {p.base_sha256[:12]})")
            else:
                sources.append(
                    Source(rel, bundle_dir / p.patch, entry.sha256, entry.size, True, (base, bundle_dir / p.patch))
                )
        elif (have_file := index.by_digest.get(entry.sha256)) is not None:
            # the served set was digest-checked when its bundle was added: its size is compared, not re-hashed
            sources.append(Source(rel, have_file, entry.sha256, entry.size, check=False))
        else:
            missing.append(rel)
    repo_indexes: dict[str, Path] = {}
    for rel, entry in content.items():
        if not _kept_index(rel):
            continue
        found = bundle_dir / rel if (delta is None or rel in sums) else index.by_digest.get(entry.sha256)
        if found is None or not found.is_file():
            missing.append(rel)
        else:
            repo_indexes[rel] = found
    if conflicts:
        raise BadInput(
            f"{bundle_dir}: {len(conflicts)} path(s) are served with other content: " + "; ".join(conflicts[:5]),
            hint="two bundles may not put different files at one URL; prune the version that holds them first",
        )
    if missing:
        raise BadInput(
            f"{bundle_dir}: {len(missing)} file(s) of Kubernetes {manifest.get('kube_version')} are neither in "
            f"the delta nor served here: " + ", ".join(missing[:5]),
            hint="the served set lost content the delta relies on (pruned?); install the full bundle instead",
        )
    return MergePlan(
        identity=identity,
        manifest=manifest,
        kube_version=str(manifest.get("kube_version", "")),
        kubespray_version=str((manifest.get("kubespray") or {}).get("version", "")),
        content=content,
        delta=delta,
        sources=sources,
        replaced=replaced,
        version_dir=version_dir,
        staging=root / STAGING_DIR / identity,
        repo_indexes=repo_indexes,
    )


def _same_device(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_dev == b.stat().st_dev
    except OSError:
        return False


def check_space(plan: MergePlan, root: Path) -> int:
    """Bytes that must be written (copies, rebuilt patches); raise BadInput when the served file system
    lacks them."""
    root.mkdir(parents=True, exist_ok=True)
    need = sum(s.size for s in plan.sources if s.patch is not None or not _same_device(s.path, root))
    free = shutil.disk_usage(root).free
    if need + SPACE_MARGIN > free:
        raise BadInput(
            f"{root}: not enough space to add Kubernetes {plan.kube_version}: needs {human_bytes(need + SPACE_MARGIN)}, "
            f"{human_bytes(free)} free",
            hint="free space there (or `kubeplay prune --keep VERSION...`), then run the install again",
        )
    return need


def _copy_hashing(src: Path, dest: Path) -> str:
    h = hashlib.sha256()
    with src.open("rb") as fi, dest.open("wb") as fo:
        while chunk := fi.read(_CHUNK):
            h.update(chunk)
            fo.write(chunk)
    return h.hexdigest()


def _stage_one(src: Source, dest: Path) -> str:
    """Put one file at dest; return how ("linked", "copied", "rebuilt"). Raise BundleError on a bad digest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    if src.patch is not None:
        from kubeplay.bundle.delta import apply_patch  # noqa: PLC0415  (written with the delta builder)

        apply_patch(src.patch[0], src.patch[1], dest, src.sha256, src.size)
        return "rebuilt"
    how = "linked"
    try:
        os.link(src.path, dest)
        digest = sha256_file(dest) if src.check else None
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        how = "copied"
        digest = _copy_hashing(src.path, dest)
    if digest is not None and digest != src.sha256:
        dest.unlink(missing_ok=True)
        raise BundleError(
            f"{src.path}: content does not match its listed sha256 ({digest[:12]}, listed {src.sha256[:12]}) "
            f"for {src.rel}; nothing was added to what this node serves",
            hint="copy the bundle again from the build machine and run `kubeplay verify` on it",
        )
    if dest.stat().st_size != src.size and src.size:
        raise BundleError(
            f"{src.path}: {dest.stat().st_size} bytes, listed as {src.size}", hint="copy the bundle again"
        )
    return how


def _kept_index(rel: str) -> bool:
    """The bundle's own apt Packages and rpm modules metadata, kept per version so the union can be
    rebuilt from the versions that remain after a prune."""
    parts = rel.split("/")
    if parts[0] != "repos" or len(parts) < 3:
        return False
    if parts[1] == "apt":
        return "dists" in parts and parts[-1] == "Packages"
    return parts[1] == "rpm" and "repodata" in parts and "modules.yaml" in parts[-1]


def stage(plan: MergePlan, bundle_dir: Path, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Stage every new file and the version directory under plan.staging; return counts by how."""
    counts = {"linked": 0, "copied": 0, "rebuilt": 0}
    shutil.rmtree(plan.staging, ignore_errors=True)
    plan.staging.mkdir(parents=True)
    total = sum(s.size for s in plan.sources)
    done = 0
    try:
        for src in plan.sources:
            counts[_stage_one(src, plan.staging / "tree" / src.rel)] += 1
            done += src.size
            if progress is not None:
                progress(done, total)
        vstage = plan.staging / "version"
        vstage.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle_dir / MANIFEST_NAME, vstage / MANIFEST_NAME)
        (vstage / SUMS_NAME).write_bytes(full_sums_text(plan.content))
        for rel, found in plan.repo_indexes.items():
            dest = vstage / REPO_INDEXES / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found, dest)
    except BaseException as exc:
        shutil.rmtree(plan.staging, ignore_errors=True)
        with suppress(OSError):
            plan.staging.parent.rmdir()
        if not isinstance(exc, OSError) or exc.errno != errno.ENOSPC:
            raise
        raise BadInput(
            f"{plan.staging}: the disk filled while adding Kubernetes {plan.kube_version} "
            f"(needs about {human_bytes(plan.copy_bytes)}); nothing was added to what this node serves",
            hint="free space on that file system, then run the install again",
        ) from None
    return counts


def commit(plan: MergePlan, root: Path) -> int:
    """Rename staged files into the served set (content before what points at it), then the version
    directory. Idempotent: a re-run after kill -9 finds what already moved and moves the rest."""
    tree = plan.staging / "tree"
    moved = 0
    staged = sorted((s.rel for s in plan.sources), key=lambda r: (_commit_rank(r), r))
    for rel in staged:
        src = tree / rel
        if not src.exists():
            continue
        dest = served_location(root, plan.staging / "version", rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        moved += 1
    vstage = plan.staging / "version"
    if vstage.exists():
        if plan.version_dir.exists():
            shutil.rmtree(plan.version_dir)  # an earlier run's, never recorded as served
        plan.version_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(vstage, plan.version_dir)
    return moved


def record_version(plan: MergePlan) -> None:
    """The commit point: with version.json the version is served (and listed in the inventory)."""
    body = {
        "identity": plan.identity,
        "kube_version": plan.kube_version,
        "kubespray_version": plan.kubespray_version,
        # microseconds: the order of installs is the order versions are listed in (newest last)
        "installed_at": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "delta_of": list(plan.delta.base.identities) if plan.delta is not None else [],
    }
    atomic_write(plan.version_dir / VERSION_RECORD, json.dumps(body, indent=2).encode() + b"\n")


@contextmanager
def served_lock(root: Path) -> Iterator[None]:
    """One install or prune at a time changes the served set; a second waits up to 10 minutes."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("a") as fh:
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BadInput(
                        f"{root}: another kubeplay install or prune has held the served set for 10 minutes",
                        hint="wait for it to finish, then run this again",
                    ) from None
                time.sleep(0.5)
        yield


def reindex_served(paths: HostPaths, extra: MergePlan | None = None) -> str:
    """Re-index the served OS repos over every served version (and `extra`, not yet recorded)."""
    versions = served_versions(paths)
    dirs = [v.dir for v in versions]
    manifests = [v.manifest for v in versions]
    if extra is not None and extra.version_dir not in dirs:
        dirs.append(extra.version_dir)
        manifests.append(extra.manifest)
    return reindex(paths.served, dirs, manifests, paths.etc / REPO_KEY_HOME)


def add_bundle(
    bundle_dir: Path,
    paths: HostPaths,
    progress: Callable[[int, int], None] | None = None,
    verified_sums: str | None = None,
) -> MergeResult:
    """Add the bundle at `bundle_dir` (full or delta) to the served set; see the module docstring and
    plan_merge for `verified_sums`."""
    with served_lock(paths.served):
        plan = plan_merge(bundle_dir, paths, verified_sums)
        if (plan.version_dir / VERSION_RECORD).is_file():
            # served already; a run killed after recording it may have left its staging behind
            shutil.rmtree(plan.staging, ignore_errors=True)
            with suppress(OSError):
                plan.staging.parent.rmdir()
            return MergeResult(plan.identity, plan.kube_version, 0, 0, 0, 0, already=True)
        check_space(plan, paths.served)
        counts = stage(plan, bundle_dir, progress)
        added = commit(plan, paths.served)
        reindex_served(paths, plan)
        record_version(plan)
        shutil.rmtree(plan.staging, ignore_errors=True)
        with suppress(OSError):
            plan.staging.parent.rmdir()
    return MergeResult(plan.identity, plan.kube_version, added, counts["linked"], counts["copied"], counts["rebuilt"])
