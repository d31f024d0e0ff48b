"""`kubeplay build`'s OS repo step: plan every target, download, then write signed repos into the bundle.

Everything that can fail on bad input or a bad mirror (index signatures, closures, downloads) happens
before the first byte is written into the bundle; repos are assembled beside their final place and
moved in whole.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from kubeplay import settings
from kubeplay.config.bundle import BundleSpec, OsTarget
from kubeplay.console import Output, human_bytes
from kubeplay.errors import BadInput
from kubeplay.fetch.http import Downloader
from kubeplay.osrepo.apt_repo import AptRepoContent, write_apt_repo
from kubeplay.osrepo.apt_target import AptPlan, PackageRequest, plan_apt_target
from kubeplay.osrepo.baseline import read_baseline
from kubeplay.osrepo.blobcache import Wanted, fetch_into_cache, place
from kubeplay.osrepo.deploy_python import DeployPlan, plan_deploy
from kubeplay.osrepo.rpm_repo import write_rpm_repo
from kubeplay.osrepo.rpm_target import RpmPlan, plan_rpm_target
from kubeplay.osrepo.signing import KEYRING_NAME, BundleSigner
from kubeplay.osrepo.targets import Family, Target, default_packages, find_target, repo_dir


class OsRepoTargetReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    distro: str
    release: str
    family: Family
    arches: list[str]
    path: str  # bundle-relative repo directory
    packages: int
    bytes: int
    skipped_defaults: list[str]


class OsRepoReport(BaseModel):
    """What build_os_repos put into the bundle."""

    model_config = ConfigDict(extra="forbid")
    targets: list[OsRepoTargetReport]
    keyring: str | None  # bundle-relative public key for apt signed-by= / rpm repo_gpgcheck
    bundled_bytes: int
    seconds: float

    @property
    def packages(self) -> int:
        return sum(t.packages for t in self.targets)


def package_request(
    spec: BundleSpec, os_target: OsTarget, target: Target, deploy: DeployPlan | None = None
) -> PackageRequest:
    """requested = common + family list + per-distro lists (+ the Python of a deploy_node: target); optional =
    the defaults not already requested (+ the Python of a target that may be the deploy node)."""
    pk = spec.packages
    family_list = pk.apt if target.family == "apt" else pk.yum
    per = [
        *pk.per_distro.get(target.distro, []),
        *pk.per_distro.get(f"{target.distro}{target.release}", []),
        *pk.per_distro.get(f"{target.distro}-{target.release}", []),
    ]
    python_required, python_optional = deploy.python_packages(target) if deploy else ((), ())
    requested = list(dict.fromkeys([*pk.common, *family_list, *per, *python_required]))
    names = {r.partition("=")[0] for r in requested}
    defaults = default_packages(target) if pk.defaults else []
    optional = list(dict.fromkeys(n for n in (*defaults, *python_optional) if n not in names))
    baseline = None
    if os_target.baseline is not None:
        path = spec.resolve(os_target.baseline)
        family, installed = read_baseline(path)
        if family != target.family:
            raise BadInput(
                f"baseline {path} lists {family} packages but {target.label} uses {target.family}",
                hint="capture the baseline on a node of that distro",
            )
        baseline = (str(path), installed)
    if not requested and not optional:
        raise BadInput(f"no packages to bundle for {target.label}", hint="list packages: or set packages.defaults")
    return PackageRequest(requested, optional, baseline)


def _repo_dir(target: Target) -> Path:
    return Path(repo_dir(target))  # install.sh's deploy-node.txt names the same directory


def _swap_in(staged: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staged.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _prune_stale(bundle_dir: Path, current: set[str]) -> None:
    """Remove repos of targets bundle.yaml no longer lists (repos/<family>/<distro>/<release>)."""
    for family in ("apt", "rpm"):
        top = bundle_dir / "repos" / family
        for repo in sorted(top.glob("*/*")) if top.is_dir() else []:
            if repo.is_dir() and str(repo.relative_to(bundle_dir)) not in current:
                shutil.rmtree(repo)
                if not any(repo.parent.iterdir()):
                    repo.parent.rmdir()


TargetPlan = tuple[OsTarget, Target, AptPlan | RpmPlan]


def build_os_repos(
    spec: BundleSpec,
    bundle_dir: Path,
    downloader: Downloader,
    *,
    out: Output,
    cache_dir: Path | None = None,
    deploy: DeployPlan | None = None,
) -> OsRepoReport:
    """Resolve, download and write the OS repos of spec.os into bundle_dir/repos; raise on any problem first.

    Phases: resolve each target's package closure, download every package into the cache, write and sign
    the repos beside the bundle's and swap them in, remove repos of targets no longer listed.
    """
    started = time.monotonic()
    cache = cache_dir or settings.from_environ().cache.osrepo
    cache.mkdir(parents=True, exist_ok=True)
    if deploy is None:  # the kubespray tree the build copied in decides which Python Ansible runs on
        tree = bundle_dir / "kubespray"
        deploy = plan_deploy(spec, tree if tree.is_dir() else None)
    plans = _resolve_targets(spec, downloader, cache, out, deploy)
    wanted: list[Wanted] = [w for _, _, p in plans for w in p.files.values()]
    cached = fetch_into_cache(downloader, cache, wanted, title="OS packages")
    reports, keyring_rel = _write_repos(spec, bundle_dir, plans, cached)
    _prune_stale(bundle_dir, {r.path for r in reports})
    report = OsRepoReport(
        targets=reports,
        keyring=keyring_rel,
        bundled_bytes=sum(r.bytes for r in reports),
        seconds=time.monotonic() - started,
    )
    out.info(
        f"OS repos: {len(reports)} targets, {report.packages} packages, "
        f"{human_bytes(report.bundled_bytes)} in {report.seconds:.0f}s"
    )
    return report


def _resolve_targets(
    spec: BundleSpec, downloader: Downloader, cache: Path, out: Output, deploy: DeployPlan
) -> list[TargetPlan]:
    """Each os: target's packages and their closure from its mirror's signed indexes; BadInput for a duplicate."""
    seen: set[tuple[str, str]] = set()
    plans: list[TargetPlan] = []
    for os_target in spec.os:
        target = find_target(os_target.distro, os_target.release)
        if (target.distro, target.release) in seen:
            raise BadInput(f"{target.label} is listed twice under os:", hint="merge the arches into one entry")
        seen.add((target.distro, target.release))
        request = package_request(spec, os_target, target, deploy)
        out.info(f"resolving {target.label} ({', '.join(os_target.arches)})")
        plan: AptPlan | RpmPlan
        if target.family == "apt":
            plan = plan_apt_target(
                os_target, target, packages=request, downloader=downloader, cache=cache, keyring_base=spec.base_dir
            )
        else:
            plan = plan_rpm_target(
                os_target, target, request=request, downloader=downloader, cache=cache, keyring_base=spec.base_dir
            )
        if plan.skipped:
            out.warn(f"{target.label}: default packages not in its repos, skipped: {', '.join(plan.skipped)}")
            if note := deploy.missing_python(target, plan.skipped):
                out.warn(note)
        plans.append((os_target, target, plan))
    return plans


def _write_repos(
    spec: BundleSpec, bundle_dir: Path, plans: list[TargetPlan], cached: Mapping[str, Path]
) -> tuple[list[OsRepoTargetReport], str]:
    """Write every target's signed repo under repos/.staging, then move each into place with the public key.

    Returns the reports and the bundle-relative keyring path.
    """
    staging = bundle_dir / "repos" / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    reports: list[OsRepoTargetReport] = []
    with BundleSigner() as signer:
        (staging / KEYRING_NAME).write_bytes(signer.public_key())
        for os_target, target, plan in plans:
            stage = staging / target.distro / (target.codename or target.release)
            reports.append(_write_repo(spec, stage, os_target, target, plan, cached, signer))
        keyring_rel = str(Path("repos") / KEYRING_NAME)
        for (_, target, _), done in zip(plans, reports, strict=True):
            _swap_in(staging / target.distro / (target.codename or target.release), bundle_dir / done.path)
        (staging / KEYRING_NAME).replace(bundle_dir / keyring_rel)
    shutil.rmtree(staging, ignore_errors=True)
    return reports, keyring_rel


def _write_repo(
    spec: BundleSpec,
    stage: Path,
    os_target: OsTarget,
    target: Target,
    plan: AptPlan | RpmPlan,
    cached: Mapping[str, Path],
    signer: BundleSigner,
) -> OsRepoTargetReport:
    """One target's packages placed from the cache and its signed indexes written, in `stage`."""
    total = 0
    for rel, want in plan.files.items():
        place(cached[want.url], stage / rel)
        total += want.size or 0
    if isinstance(plan, AptPlan):
        write_apt_repo(stage, AptRepoContent(target.distro, target.release, target.codename, plan.paragraphs), signer)
        count = len(plan.files)
    else:
        count = write_rpm_repo(stage, plan, signer, spec.base_dir)
    return OsRepoTargetReport(
        distro=target.distro,
        release=target.release,
        family=target.family,
        arches=list(os_target.arches),
        path=str(_repo_dir(target)),
        packages=count,
        bytes=total,
        skipped_defaults=plan.skipped,
    )
