"""Plan one apt target: its upstream sources, verified indexes, and the closure for each arch."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from kubeplay.catalog.model import Checksum
from kubeplay.config.bundle import OsTarget
from kubeplay.errors import BadInput
from kubeplay.fetch.http import Downloader
from kubeplay.osrepo.apt_index import AptSource, PackagesIndex, fetch_apt_indexes
from kubeplay.osrepo.blobcache import Wanted
from kubeplay.osrepo.closure import ClosureRequest, Installed, resolve_closure
from kubeplay.osrepo.host_sources import host_sources_for
from kubeplay.osrepo.targets import Target


@dataclass(frozen=True)
class PackageRequest:
    """What to resolve for one target: names that must exist, and defaults that may be absent."""

    requested: list[str]
    optional: list[str]
    baseline: tuple[str, list[Installed]] | None = None  # (origin, packages) from a captured baseline


@dataclass
class AptPlan:
    target: Target
    arches: list[str]
    paragraphs: dict[str, list[str]] = field(default_factory=dict)  # arch -> chosen paragraphs
    files: dict[str, Wanted] = field(default_factory=dict)  # pool path -> upstream file
    skipped: list[str] = field(default_factory=list)
    baseline_size: dict[str, int] = field(default_factory=dict)
    baseline_paragraphs: dict[str, list[str]] = field(default_factory=dict)  # arch -> index paragraphs


def apt_sources(os_target: OsTarget, target: Target, keyring_base: Path) -> list[AptSource]:
    """The upstream suites for an apt target: os[].sources, else os[].mirror, else the build host's sources."""
    default_keyring = (keyring_base / os_target.keyring) if os_target.keyring else Path(target.keyring)
    arches = tuple(os_target.arches)
    suites = [target.codename, f"{target.codename}-updates"]
    if target.distro == "ubuntu":
        suites.append(f"{target.codename}-security")
    found: list[AptSource] = []
    if os_target.sources:
        for src in os_target.sources:
            keyring = (keyring_base / src.keyring) if src.keyring else default_keyring
            for suite in src.suites or suites:
                comps = tuple(src.components) or target.components
                found.append(AptSource(src.url.rstrip("/"), suite, comps, keyring, tuple(src.arches) or arches))
    elif os_target.mirror:
        for suite in suites:
            found.append(AptSource(os_target.mirror.rstrip("/"), suite, target.components, default_keyring, arches))
    else:
        for host in host_sources_for(target.codename):
            keyring = default_keyring
            if host.signed_by and Path(host.signed_by).is_file() and not os_target.keyring:
                keyring = Path(host.signed_by)
            comps = tuple(c for c in host.components if c in target.components) or target.components
            for suite in host.suites:
                found.append(AptSource(host.uri, suite, comps, keyring, arches))
    if not found:
        raise BadInput(
            f"no package mirror for {target.label} ({target.codename})",
            hint="set os[].mirror (or os[].sources) in bundle.yaml; the build host's apt sources have no "
            f"{target.codename} suite to borrow",
        )
    for arch in arches:
        if not any(arch in s.arches for s in found):
            raise BadInput(f"no source serves {arch} for {target.label}", hint="add one under os[].sources")
    return found


_FILE_FIELDS = re.compile(r"^(Filename|Size|SHA256):[ \t]*(\S+)", re.M)


def _upstream_file(index: PackagesIndex, paragraph: str) -> tuple[str, Wanted]:
    fields = dict(_FILE_FIELDS.findall(paragraph))
    if "Filename" not in fields or "SHA256" not in fields:
        raise BadInput(f"{index.source.label}: a Packages entry lacks Filename or SHA256", hint="use another mirror")
    name = fields["Filename"]
    want = Wanted(
        f"{index.source.url}/{name}",
        Checksum(algorithm="sha256", hex=fields["SHA256"].lower()),
        int(fields["Size"]) if "Size" in fields else None,
        label=name.rsplit("/", 1)[-1],
    )
    return name, want


def default_apt_baseline(target: Target, arch: str, indexes: list[PackagesIndex]) -> list[Installed]:
    """A minimal install: Essential: yes + Priority: required and their dependencies, from the release suite."""
    primary = [i for i in indexes if i.source.suite == target.codename] or indexes
    names = sorted({k[0] for i in primary for k in i.base_keys})
    req = ClosureRequest("apt", arch, f"{target.label} {arch} (minimal baseline)", [], names)
    result = resolve_closure(req, [(str(n), i.path) for n, i in enumerate(primary)])
    return [Installed(c.name, c.version, c.arch) for c in result.packages]


def _paragraphs_of(entries: list[Installed], indexes: list[PackagesIndex]) -> list[str]:
    """The index paragraphs of baseline entries (entries whose version no index carries are left out)."""
    found = []
    for entry in entries:
        key = (entry.name, entry.version, entry.arch)
        para = next((i.paragraphs[key] for i in indexes if key in i.paragraphs), None)
        if para is not None:
            found.append(para)
    return found


def _baseline_for(arch: str, entries: list[Installed]) -> list[Installed]:
    # A captured baseline comes from one node; for another arch, its arch-specific packages map across.
    return [Installed(e.name, e.version, e.arch if e.arch in ("all", "") else arch) for e in entries]


def plan_apt_target(
    os_target: OsTarget,
    target: Target,
    *,
    packages: PackageRequest,
    downloader: Downloader,
    cache: Path,
    keyring_base: Path,
) -> AptPlan:
    """Fetch and verify the indexes, resolve each arch's closure, and list the files to download."""
    sources = apt_sources(os_target, target, keyring_base)
    indexes = fetch_apt_indexes(sources, os_target.arches, downloader, cache)
    plan = AptPlan(target, list(os_target.arches))
    skipped: set[str] = set()
    for arch in os_target.arches:
        arch_indexes = [i for i in indexes if i.arch == arch]
        if packages.baseline is not None:
            baseline = _baseline_for(arch, packages.baseline[1])
        else:
            baseline = default_apt_baseline(target, arch, arch_indexes)
        plan.baseline_size[arch] = len(baseline)
        plan.baseline_paragraphs[arch] = _paragraphs_of(baseline, arch_indexes)
        req = ClosureRequest(
            family="apt",
            arch=arch,
            label=f"{target.label} {arch}",
            requested=packages.requested,
            optional=packages.optional,
            recommends=os_target.recommends,
            baseline=baseline,
        )
        result = resolve_closure(req, [(str(n), i.path) for n, i in enumerate(arch_indexes)])
        skipped.update(result.skipped)
        chosen = []
        for c in result.packages:
            index = arch_indexes[int(c.repo_key)]
            paragraph = index.paragraphs[(c.name, c.version, c.arch)]
            name, want = _upstream_file(index, paragraph)
            known = plan.files.get(name)
            if known is not None and known.checksum != want.checksum:
                raise BadInput(
                    f"{name} differs between upstream suites (sha256 {known.checksum.hex} vs {want.checksum.hex})",
                    hint="the mirror is inconsistent; sync it or use another one",
                )
            plan.files[name] = want
            chosen.append(paragraph)
        plan.paragraphs[arch] = chosen
    plan.skipped = sorted(skipped)
    return plan
