"""`kubeplay build`: bundle.yaml -> kubespray tree -> plan -> files -> images -> OS repos -> manifest -> sums.

The bundle directory is also the cache: a re-run skips every file and image already there and verified,
a changed kube_version fetches only what differs, and what the new plan no longer lists is removed at
the end of a successful build. Until a build succeeds the directory has no SHA256SUMS, so a half-built
bundle can never pass `kubeplay verify`. Build state (resume data, digest caches) lives in
`.kubeplay-build/`, which is not part of the bundle.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from kubeplay import __version__, settings
from kubeplay.assemble.charts import ChartSet, StoredCharts, resolve_charts, store_charts
from kubeplay.assemble.images import ImageFetcher, ImagesResult
from kubeplay.assemble.install_step import add_install_files_kept
from kubeplay.assemble.kubespray import copy_tree, obtain_tree, tree_identity
from kubeplay.assemble.signatures import fetch_signatures
from kubeplay.bundle.manifest import (
    BUILD_STATE_DIR,
    MANIFEST_NAME,
    REGISTRY_BINARY_FILE,
    SIGNATURE_NAME,
    SUMS_NAME,
    BundleManifest,
    FileRecord,
    KubesprayRecord,
    OsRepoRecord,
    Totals,
    add_to_sha256sums,
    read_sha256sums,
    utc_now,
    write_manifest,
    write_sha256sums,
)
from kubeplay.bundle.sbom import SBOM_NAME, write_sbom
from kubeplay.catalog.locations import LocationError, file_destination
from kubeplay.catalog.model import Checksum, FileArtifact, Plan
from kubeplay.catalog.planner import make_plan
from kubeplay.catalog.source import KubesprayTree
from kubeplay.catalog.user import is_users, with_user_artifacts
from kubeplay.config.bundle import BundleSpec
from kubeplay.console import Output, human_bytes
from kubeplay.errors import BadInput, BundleError, ConfigError
from kubeplay.fetch.charts import ChartFetcher
from kubeplay.fetch.http import Downloader, DownloadFailure, DownloadItem, DownloadReport
from kubeplay.fetch.mirrors import load_mirrors, redact
from kubeplay.osrepo.deploy_python import DeployPlan, deploy_table, plan_deploy
from kubeplay.state import atomic_write, input_hash
from kubeplay.store.registry import RegistryStorage

Planner = Callable[[BundleSpec, KubesprayTree], Plan]


@dataclass
class BuildOptions:
    jobs: int = 8
    retries: int = 5
    timeout: float = 60.0
    progress: bool = True
    environ: Mapping[str, str] | None = None
    planner: Planner | None = None  # default: the catalog's make_plan, cached per tree and spec
    # wheels/ for the deploy node (from PyPI); install.sh and config-sample.yaml are always written
    wheels: bool = field(default_factory=lambda: settings.from_environ().wheels)
    signatures: bool = True  # upstream cosign artifacts beside every image (--no-signatures)


@dataclass
class BuildResult:
    bundle_dir: Path
    failures: list[DownloadFailure] = field(default_factory=list)
    manifest: BundleManifest | None = None
    sums_sha256: str | None = None
    bytes_fetched: int = 0
    files_fetched: int = 0
    files_skipped: int = 0
    images_skipped: int = 0
    images_resolved: int = 0
    # every failure is one of the user's own artifacts not matching upstream (sha256, tag, arch): bundle.yaml's
    bad_input: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures and self.sums_sha256 is not None


def default_bundle_name(spec: BundleSpec, kube_version: str) -> str:
    distros = "-".join(f"{t.distro}{t.release}" for t in spec.os) or "nodistro"
    return f"kubeplay-{kube_version}-{distros}-{'-'.join(spec.arches)}"


@contextmanager
def build_lock(state_dir: Path) -> Iterator[None]:
    """Refuse a second build into the same directory at the same time."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "lock").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BundleError(
                f"{state_dir.parent}: another kubeplay build is writing this bundle", hint="wait for it to finish"
            ) from None
        yield


def tool_versions() -> dict[str, str]:
    found = {"kubeplay": __version__, "python": platform.python_version()}
    for dist in ("httpx", "pydantic", "jinja2", "ansible-core"):
        with suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    return found


def deploy_node_files(spec: BundleSpec, arches: tuple[str, ...]) -> tuple[FileArtifact, ...]:
    """Files the deploy node itself needs that kubespray does not list: the registry release archive."""
    binary = spec.registry_binary
    if binary is None:
        return ()
    files = []
    for arch in arches:
        url = binary.url_for(arch)
        try:
            path = file_destination(url)
        except LocationError as exc:
            raise ConfigError(f"registry_binary.url: {exc}") from None
        checksum = Checksum(algorithm="sha256", hex=binary.sha256[arch])
        files.append(
            FileArtifact(
                name=REGISTRY_BINARY_FILE,
                arch=arch,
                url=url,
                checksum=checksum,
                path=path,
                variable="registry_binary.url",
            )
        )
    return tuple(files)


def file_items(plan: Plan, bundle_dir: Path) -> list[DownloadItem]:
    items: dict[str, DownloadItem] = {}
    for f in plan.files:
        if f.path not in items:
            items[f.path] = DownloadItem(f.url, bundle_dir / f.path, f.checksum, label=f.variable)
    return list(items.values())


def prune_files(bundle_dir: Path, keep: set[str]) -> int:
    """Remove files under files/ the plan no longer lists (and stale .part files); return bytes freed."""
    freed = 0
    top = bundle_dir / "files"
    if not top.is_dir():
        return 0
    for dirpath, _dirs, names in os.walk(top, topdown=False):
        for name in names:
            path = Path(dirpath) / name
            rel = path.relative_to(bundle_dir).as_posix()
            if rel not in keep:
                freed += path.lstat().st_size
                path.unlink()
        if Path(dirpath) != top and not any(Path(dirpath).iterdir()):
            Path(dirpath).rmdir()
    return freed


def _build_os_repos(
    spec: BundleSpec, bundle_dir: Path, downloader: Downloader, out: Output, deploy: DeployPlan
) -> list[OsRepoRecord]:
    if not spec.os:
        return []
    try:
        # imported here: libsolv and createrepo_c come with kubeplay[build] and only builds with `os:` use them
        from kubeplay.osrepo import build_os_repos  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        raise BadInput(
            f"bundle.yaml has `os:` targets, but this kubeplay lacks {exc.name} to build OS repositories",
            hint="install the build extra: pip install 'kubeplay[build]' (and apt-get install python3-solv)",
        ) from None
    report = build_os_repos(
        spec, bundle_dir, downloader, out=out, cache_dir=bundle_dir / BUILD_STATE_DIR / "osrepo", deploy=deploy
    )
    return [
        OsRepoRecord(
            family=t.family,
            distro=t.distro,
            release=t.release,
            arches=t.arches,
            path=t.path,
            packages=t.packages,
            size=t.bytes,
        )
        for t in report.targets
    ]


def check_output_dir(bundle_dir: Path) -> None:
    """Refuse to build into a directory holding something other than a kubeplay bundle (it prunes)."""
    if bundle_dir.exists() and not bundle_dir.is_dir():
        raise BadInput(f"{bundle_dir}: exists and is not a directory", hint="choose another -o/--output")
    is_bundle = (bundle_dir / BUILD_STATE_DIR).is_dir() or (bundle_dir / MANIFEST_NAME).is_file()
    if bundle_dir.is_dir() and not is_bundle and any(bundle_dir.iterdir()):
        raise BadInput(
            f"{bundle_dir}: not empty and not a kubeplay bundle",
            hint="build into a new or empty directory, or into an earlier bundle to update it",
        )


def cached_plan(spec: BundleSpec, tree: KubesprayTree, identity: str, state_dir: Path) -> Plan:
    """make_plan, remembered per (kubeplay version, tree, spec) so an unchanged re-run skips rendering."""
    key = input_hash({"kubeplay": __version__, "tree": identity, "spec": spec.model_dump(mode="json")})
    path = state_dir / "plan.json"
    with suppress(OSError, ValueError):
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return Plan.model_validate(saved["plan"])
    plan = make_plan(spec, tree)
    atomic_write(path, json.dumps({"key": key, "plan": plan.model_dump(mode="json")}).encode())
    return plan


def _redacted(value: Any) -> Any:
    """The spec as JSON data with userinfo stripped from every URL (bundle.yaml holds no secrets, but)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


@dataclass
class Fetched:
    """What the download phases put into the bundle: files (with their digests) and images in the store."""

    files: DownloadReport
    images: ImagesResult
    storage: RegistryStorage
    charts: StoredCharts


def run_build(spec: BundleSpec, bundle_dir: Path, options: BuildOptions | None = None, *, out: Output) -> BuildResult:
    """Build (or complete, or update) the bundle at `bundle_dir`; failures of single items are in the result.

    Phases, in order: lock the directory, kubespray tree, plan, files and images, OS repos (all downloads,
    nothing pruned yet), then prune what the plan no longer lists, manifest, install files, SHA256SUMS.
    Raises BadInput/BundleError/ConfigError for a build that cannot start.
    """
    opts = options or BuildOptions()
    check_output_dir(bundle_dir)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    state = bundle_dir / BUILD_STATE_DIR
    result = BuildResult(bundle_dir)
    with build_lock(state):
        (bundle_dir / SUMS_NAME).unlink(missing_ok=True)  # not a bundle until this build succeeds
        (bundle_dir / SIGNATURE_NAME).unlink(missing_ok=True)  # it signed the previous SHA256SUMS
        with _downloader(spec, state, opts, out) as downloader:
            tree, kubespray = obtain_tree(spec, state, downloader)
            identity = tree_identity(tree)
            copy_tree(tree, bundle_dir, state, identity, out=out)
            deploy = plan_deploy(spec, tree.root)  # BadInput for a deploy_node that cannot be one
            for warning in deploy.warnings():
                out.warn(warning)
            plan = _plan(spec, tree, identity, state, opts, out)
            charts = _charts(spec, plan, downloader, out)
            fetched = _fetch(spec, charts.with_images(plan), bundle_dir, downloader, out, result, charts)
            if result.failures:
                return result
            if opts.signatures:
                images = charts.with_images(plan).images
                fetch_signatures(fetched.storage, downloader, state, images, fetched.images, out=out)
            os_repos = _build_os_repos(spec, bundle_dir, downloader, out, deploy)
        _prune(bundle_dir, plan, fetched, out)
        records = _file_records(plan, fetched.files, bundle_dir)
        blob_sizes = fetched.storage.blob_sizes()
        manifest = _manifest(spec, plan, kubespray, records, fetched.images, blob_sizes, os_repos)
        manifest.charts = fetched.charts.records
        # install.sh, config-sample.yaml and wheels/ go in before SHA256SUMS so they are covered by it.
        add_install_files_kept(
            bundle_dir,
            state,
            downloader.cache,
            kube_version=plan.kube_version,
            arches=list(deploy.arches) if deploy.named else list(plan.arches),
            registry_project=spec.registry_project,
            kubespray_identity=identity,
            with_wheels=opts.wheels,
            pythons=deploy.pythons,
            deploy_table=deploy_table(deploy) if spec.os else None,
        )
        write_manifest(bundle_dir, manifest)
        result.manifest = manifest
        result.sums_sha256 = _write_sums(bundle_dir, manifest, fetched.storage, blob_sizes)
    return result


def _downloader(spec: BundleSpec, state: Path, opts: BuildOptions, out: Output) -> Downloader:
    return Downloader(
        load_mirrors(spec, opts.environ, out=out),
        out=out,
        jobs=opts.jobs,
        retries=opts.retries,
        timeout=opts.timeout,
        progress=opts.progress,
        verified_cache=state / "verified.json",
    )


def _plan(spec: BundleSpec, tree: KubesprayTree, identity: str, state: Path, opts: BuildOptions, out: Output) -> Plan:
    """The plan for this tree and spec, plus the deploy node's own files; render problems are warned about."""
    plan = opts.planner(spec, tree) if opts.planner else cached_plan(spec, tree, identity, state)
    plan = plan.model_copy(update={"files": plan.files + deploy_node_files(spec, plan.arches)})
    plan = with_user_artifacts(plan, spec)
    for problem in plan.problems:
        out.warn(f"{problem.entry}: {problem.variable} did not render: {problem.message}")
    out.info(
        f"plan: {len(plan.files)} files, {len(plan.images)} images for kubernetes {plan.kube_version} "
        f"({', '.join(plan.arches)}), kubespray {plan.kubespray_version}"
    )
    return plan


def _charts(spec: BundleSpec, plan: Plan, downloader: Downloader, out: Output) -> ChartSet:
    """bundle.yaml's charts and the images they use; what did not resolve is warned about."""
    if not spec.charts:
        return ChartSet()
    fetcher = ChartFetcher(downloader.clients, downloader.policy, settings.from_environ().cache.charts)
    charts = resolve_charts(spec, plan.arches, fetcher, jobs=downloader.jobs)
    for location, unresolved in charts.unresolved:
        out.warn(f"{location}: {unresolved.where}: {unresolved.why} (add the image to the chart's images:)")
    out.info(f"charts: {len(charts.charts)} packages, {len(charts.images)} images they use")
    return charts


def _fetch(
    spec: BundleSpec,
    plan: Plan,
    bundle_dir: Path,
    downloader: Downloader,
    out: Output,
    result: BuildResult,
    charts: ChartSet,
) -> Fetched:
    """Download the plan's files, then its images into the bundle's registry store, then store the charts;
    counts go into `result`."""
    files = downloader.download_all(file_items(plan, bundle_dir), title="files")
    result.failures.extend(files.failed)
    result.files_fetched, result.files_skipped = len(files.done), len(files.skipped)
    storage = RegistryStorage(bundle_dir / "registry")
    state = bundle_dir / BUILD_STATE_DIR / "images.json"
    fetcher = ImageFetcher(storage, downloader, state, out=out, platform_policy=spec.platform_policy)
    images = fetcher.run(plan.images, plan.arches)
    result.failures.extend(images.failed)
    result.images_skipped, result.images_resolved = images.skipped, images.resolved
    result.bytes_fetched = files.bytes_fetched + images.bytes_fetched
    result.failures.extend(charts.failures)
    result.bad_input = bool(result.failures) and all(f.mismatch and is_users(f.label) for f in result.failures)
    stored = store_charts(bundle_dir, storage, spec.registry_project, charts.charts)
    return Fetched(files, images, storage, stored)


def _prune(bundle_dir: Path, plan: Plan, fetched: Fetched, out: Output) -> None:
    keep = {f.path for f in plan.files} | fetched.charts.paths
    freed = prune_files(bundle_dir, keep) + fetched.storage.prune({**fetched.images.content, **fetched.charts.content})
    if freed:
        out.info(f"removed {human_bytes(freed)} the plan no longer lists")


def _file_records(plan: Plan, files: DownloadReport, bundle_dir: Path) -> list[FileRecord]:
    records = []
    for f in plan.files:
        facts = files.facts[bundle_dir / f.path]
        records.append(
            FileRecord(
                name=f.name,
                arch=f.arch,
                version=f.version,
                url=f.url,
                path=f.path,
                variable=f.variable,
                size=facts.size,
                sha256=facts.sha256,
                checksum=str(f.checksum) if f.checksum else None,
            )
        )
    return records


def _manifest(
    spec: BundleSpec,
    plan: Plan,
    kubespray: KubesprayRecord,
    records: list[FileRecord],
    images: ImagesResult,
    blob_sizes: Mapping[str, int],
    os_repos: list[OsRepoRecord],
) -> BundleManifest:
    return BundleManifest(
        kubeplay_version=__version__,
        created_at=utc_now(),
        spec=_redacted(spec.model_dump(mode="json")),
        kubespray=kubespray,
        kube_version=plan.kube_version,
        arches=list(plan.arches),
        os=[t.model_dump(mode="json") for t in spec.os],
        files=records,
        images=sorted(images.records, key=lambda r: (r.repository, r.tag or "")),
        os_repos=os_repos,
        offline_vars=dict(plan.offline_vars),
        tools=tool_versions(),
        totals=Totals(
            files=len(records),
            files_size=sum(r.size for r in records),
            images=len(images.records),
            blobs=len(blob_sizes),
            blobs_size=sum(blob_sizes.values()),
        ),
    )


def _write_sums(
    bundle_dir: Path, manifest: BundleManifest, storage: RegistryStorage, blob_sizes: Mapping[str, int]
) -> str:
    """Write sbom.cdx.json and SHA256SUMS, the last files of a build; return SHA256SUMS's own sha256."""
    # Every blob was verified before it got its content-addressed name; files were verified on download.
    verified = {r.path: r.sha256 for r in manifest.files}
    verified.update({f"registry/{storage.blob_file(hexd)}": hexd for hexd in blob_sizes})
    (bundle_dir / SBOM_NAME).unlink(missing_ok=True)  # the SBOM records the digests of everything else
    write_sha256sums(bundle_dir, known=verified)
    write_sbom(bundle_dir, manifest, read_sha256sums(bundle_dir / SUMS_NAME))
    return add_to_sha256sums(bundle_dir, SBOM_NAME)
