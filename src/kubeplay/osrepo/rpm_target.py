"""Plan one rpm target: its repos per basearch, verified metadata, modules, and the closure."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from kubeplay.catalog.model import Checksum
from kubeplay.config.bundle import OsTarget
from kubeplay.errors import BadInput
from kubeplay.fetch.http import Downloader
from kubeplay.osrepo.apt_target import PackageRequest
from kubeplay.osrepo.blobcache import Wanted
from kubeplay.osrepo.closure import ClosureRequest, Installed, resolve_closure
from kubeplay.osrepo.rpm_index import RpmRepoIndex, RpmSource, fetch_rpm_indexes
from kubeplay.osrepo.rpm_modules import ModularFilter, enabled_streams, modules_document, read_modules
from kubeplay.osrepo.targets import RPM_BASEARCH, Target


@dataclass
class RpmPlan:
    target: Target
    arches: list[str]
    files: dict[str, Wanted] = field(default_factory=dict)  # <basearch>/Packages/<x>/<file>.rpm -> upstream
    modules: dict[str, str] = field(default_factory=dict)  # basearch -> modules.yaml text
    keyring: Path | None = None  # upstream package key to ship beside the repo
    skipped: list[str] = field(default_factory=list)
    baseline_size: dict[str, int] = field(default_factory=dict)


def _fill(template: str, release: str, basearch: str) -> str:
    return template.replace("$basearch", basearch).replace("$releasever", release).rstrip("/")


def rpm_sources(os_target: OsTarget, target: Target, basearch: str, keyring_base: Path) -> list[RpmSource]:
    """The upstream repos of an rpm target for one basearch: os[].sources, else repos below os[].mirror."""
    default_keyring = (keyring_base / os_target.keyring) if os_target.keyring else None
    arch = next(a for a, b in RPM_BASEARCH.items() if b == basearch)
    found = []
    if os_target.sources:
        for n, src in enumerate(os_target.sources):
            if src.arches and arch not in src.arches:
                continue
            keyring = (keyring_base / src.keyring) if src.keyring else default_keyring
            found.append(RpmSource(src.name or f"repo{n}", _fill(src.url, target.release, basearch), basearch, keyring))
    elif os_target.mirror:
        for repo in target.rpm_repos:
            path = target.rpm_path.format(release=target.release, repo=repo, basearch=basearch)
            found.append(
                RpmSource(repo, f"{os_target.mirror.rstrip('/')}/{path}".rstrip("/"), basearch, default_keyring)
            )
    if not found:
        raise BadInput(
            f"no package mirror for {target.label} {basearch}",
            hint="set os[].mirror (a mirror with the distro's usual layout) or os[].sources (repo baseurls)",
        )
    return found


def core_group_names(comps: list[Path]) -> list[str]:
    """Mandatory and default packages of the comps group `core` (what a minimal install puts down)."""
    names: list[str] = []
    for path in comps:
        root = ET.parse(path).getroot()  # noqa: S314 - comps is checked against repomd.xml's digest
        for group in root.iter("group"):
            if (group.findtext("id") or "").strip() != "core":
                continue
            for req in group.iter("packagereq"):
                if req.get("type", "mandatory") in ("mandatory", "default") and req.text:
                    names.append(req.text.strip())
    return list(dict.fromkeys(names))


def _closure(
    target: Target,
    basearch: str,
    request: PackageRequest,
    *,
    indexes: list[RpmRepoIndex],
    recommends: bool,
    modules: list[str],
) -> tuple[list[Wanted], list[str], list[str], str | None, int]:
    mod_index = read_modules([i.modules for i in indexes if i.modules is not None])
    enabled = enabled_streams(mod_index, modules) if mod_index.streams or modules else {}
    hide = ModularFilter(mod_index, enabled) if mod_index.streams else None
    repos = [(str(n), i.primary) for n, i in enumerate(indexes)]
    label = f"{target.label} {basearch}"
    if request.baseline is not None:
        baseline = [
            Installed(e.name, e.version, e.arch if e.arch == "noarch" else basearch) for e in request.baseline[1]
        ]
    else:
        core = core_group_names([i.comps for i in indexes if i.comps is not None])
        base_req = ClosureRequest("rpm", basearch, f"{label} (minimal baseline)", [], core, disabled=hide)
        baseline = [Installed(c.name, c.version, c.arch) for c in resolve_closure(base_req, repos).packages]
    req = ClosureRequest(
        "rpm", basearch, label, request.requested, request.optional, recommends, baseline, disabled=hide
    )
    result = resolve_closure(req, repos)
    wanted, rels, bundled = [], [], set()
    for c in result.packages:
        if c.checksum is None or c.checksum[0] not in ("sha256", "sha512"):
            raise BadInput(f"{label}: {c.name} has no sha256/sha512 checksum in its repo metadata")
        src = indexes[int(c.repo_key)].source
        filename = c.location.rsplit("/", 1)[-1]
        rels.append(f"{basearch}/Packages/{filename[0].lower()}/{filename}")
        wanted.append(
            Wanted(f"{src.url}/{c.location}", Checksum(algorithm=c.checksum[0], hex=c.checksum[1]), c.size, filename)  # type: ignore[arg-type]
        )
        evr = c.version if ":" in c.version else f"0:{c.version}"
        bundled.add(f"{c.name}-{evr}.{c.arch}")
    doc = modules_document(mod_index, enabled, bundled) if mod_index.streams else None
    return wanted, rels, result.skipped, doc, len(baseline)


def plan_rpm_target(
    os_target: OsTarget,
    target: Target,
    *,
    request: PackageRequest,
    downloader: Downloader,
    cache: Path,
    keyring_base: Path,
) -> RpmPlan:
    """Fetch and verify each basearch's metadata, resolve its closure, and list the files to download."""
    plan = RpmPlan(target, list(os_target.arches))
    plan.keyring = (keyring_base / os_target.keyring) if os_target.keyring else None
    skipped: set[str] = set()
    for arch in os_target.arches:
        basearch = RPM_BASEARCH[arch]
        sources = rpm_sources(os_target, target, basearch, keyring_base)
        indexes = fetch_rpm_indexes(sources, downloader, cache)
        wanted, rels, skip, doc, nbase = _closure(
            target, basearch, request, indexes=indexes, recommends=os_target.recommends, modules=os_target.modules
        )
        plan.baseline_size[arch] = nbase
        skipped.update(skip)
        plan.files.update(zip(rels, wanted, strict=True))
        if doc is not None:
            plan.modules[basearch] = doc
    plan.skipped = sorted(skipped)
    return plan
