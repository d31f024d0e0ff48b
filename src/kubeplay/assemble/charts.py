"""bundle.yaml `charts:`: fetch each chart and the dependencies it does not carry, find the images they use,
and store them in the bundle the two ways Helm users pull charts:

- OCI artifacts in the bundle registry, `<registry_project>/charts/<name>:<version>`
  (`helm pull oci://kube.registry.local/library/charts/<name> --version X`);
- a classic chart repository under files/charts/ (packages and a generated index.yaml), served by nginx.

The images found join the plan as the user's (variable `bundle.yaml charts[N] <chart> <where found>`), so
they take the images' fetch, store and prune path; what could not be resolved is listed for the user.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubeplay.bundle.manifest import ChartRecord
from kubeplay.catalog.chart_oci import chart_artifact, chart_layer, oci_tag, sha256_digest
from kubeplay.catalog.charts import ChartError, ChartPackage, Unresolved, discover_images, excluded, read_chart
from kubeplay.catalog.locations import parse_image_name
from kubeplay.catalog.model import ImageArtifact, Plan
from kubeplay.catalog.semver import ConstraintError
from kubeplay.config.bundle import BundleSpec, ChartRef, split_reference
from kubeplay.errors import DigestMismatch, FetchError, Interrupted, NotUpstream
from kubeplay.fetch.charts import ChartDownload, ChartFetcher
from kubeplay.fetch.items import DownloadFailure
from kubeplay.fetch.mirrors import redact
from kubeplay.fetch.workers import WorkerPool
from kubeplay.state import atomic_write
from kubeplay.store.registry import RegistryStorage, RepositoryContent

CHARTS_DIR = "files/charts"


@dataclass
class FetchedChart:
    """One chart package for the bundle: a bundle.yaml chart, or a dependency it did not carry."""

    location: str  # "bundle.yaml charts[0]" (a dependency: "... dependency <name>")
    download: ChartDownload
    package: ChartPackage

    @property
    def filename(self) -> str:
        return f"{self.package.name}-{self.package.version}.tgz"


@dataclass(frozen=True)
class ChartImage:
    image: ImageArtifact
    chart: str  # chart name
    where: str  # where in the chart it was found, or "bundle.yaml charts[N].images"


@dataclass
class ChartSet:
    """What `charts:` resolved to: packages, the images they use, what did not resolve, what failed."""

    charts: list[FetchedChart] = field(default_factory=list)
    images: list[ChartImage] = field(default_factory=list)
    unresolved: list[tuple[str, Unresolved]] = field(default_factory=list)  # (chart location, what)
    failures: list[DownloadFailure] = field(default_factory=list)

    def with_images(self, plan: Plan) -> Plan:
        """`plan` plus the charts' images not already in it."""
        known = {i.upstream for i in plan.images}
        extra = [c.image for c in self.images if c.image.upstream not in known]
        return plan.model_copy(update={"images": plan.images + tuple(extra)})


def resolve_charts(spec: BundleSpec, arches: Sequence[str], fetcher: ChartFetcher, *, jobs: int = 8) -> ChartSet:
    """Fetch every chart of `spec` (in parallel) and its missing dependencies; find their images. Failures
    (no such version, digest mismatch, network) are in the result, named by bundle.yaml location."""
    result = ChartSet()
    if not spec.charts:
        return result
    with WorkerPool(jobs, "kubeplay-charts", fetcher.clients.stop) as pool:
        futures = {pool.submit(_fetch_tree, fetcher, entry, index): index for index, entry in enumerate(spec.charts)}
        outcomes: dict[int, tuple[list[FetchedChart], list[DownloadFailure], list[tuple[str, Unresolved]]]] = {}
        for future in as_completed(futures):
            outcomes[futures[future]] = future.result()
    seen_images: set[str] = set()
    for index, entry in enumerate(spec.charts):
        fetched, failures, unresolved = outcomes[index]
        result.charts += [c for c in fetched if all(c.filename != k.filename for k in result.charts)]
        result.failures += failures
        result.unresolved += unresolved
        location = f"bundle.yaml charts[{index}]"
        found: list[tuple[str, str, str]] = []  # (ref, chart, where)
        for chart in fetched:
            images, missed = discover_images(chart.package)
            found += [(i.ref, chart.package.name, i.where) for i in images]
            result.unresolved += [(chart.location, u) for u in missed]
        found += [(ref, entry.name, f"{location}.images") for ref in entry.images]
        for ref, chart_name, where in found:
            if ref in seen_images or (not where.endswith(".images") and excluded(ref, entry.exclude_images)):
                continue
            seen_images.add(ref)
            result.images.append(
                ChartImage(_image(spec, ref, f"{location} {chart_name} {where}", arches), chart_name, where)
            )
    return result


def _image(spec: BundleSpec, ref: str, variable: str, arches: Sequence[str]) -> ImageArtifact:
    repo, tag, digest = split_reference(ref)
    name = parse_image_name(repo)
    return ImageArtifact(
        name=name.repository.rsplit("/", 1)[-1],
        upstream=ref,
        registry=name.registry,
        repository=name.repository,
        tag=tag,
        digest=digest,
        bundle_repository=name.bundle_repository(spec.registry_project),
        arches=tuple(arches),
        variable=variable,
        origin="chart",
    )


def _fetch_tree(
    fetcher: ChartFetcher, entry: ChartRef, index: int
) -> tuple[list[FetchedChart], list[DownloadFailure], list[tuple[str, Unresolved]]]:
    """The chart of `entry` and, depth first, every dependency no package carries."""
    location = f"bundle.yaml charts[{index}]"
    fetched: list[FetchedChart] = []
    failures: list[DownloadFailure] = []
    unresolved: list[tuple[str, Unresolved]] = []
    todo: list[tuple[str, str, str, str]] = [(entry.repo, entry.name, entry.version, location)]
    done: set[tuple[str, str, str]] = set()
    while todo:
        repo, name, version, where = todo.pop(0)
        if (repo, name, version) in done:
            continue
        done.add((repo, name, version))
        source = f"{repo}/{name}:{version}" if repo.startswith("oci://") else f"{repo} {name} {version}"
        try:
            download = fetcher.fetch(repo, name, version)
            package = read_chart(download.data)
        except Interrupted:
            raise
        except (FetchError, ChartError) as exc:
            mismatch = isinstance(exc, NotUpstream | DigestMismatch)
            failures.append(DownloadFailure(redact(source), where, redact(str(exc)), mismatch))
            continue
        fetched.append(FetchedChart(where, download, package))
        for dep in package.missing_dependencies():
            dep_where = f"{location} dependency {dep.name}"
            dep_repo = dep.repository.rstrip("/")
            what = f"{package.name} Chart.yaml dependency {dep.name}"
            if not dep_repo.startswith(("https://", "http://", "oci://")):
                why = f"repository {dep.repository or '(none)'!r} cannot be fetched"
                unresolved.append((location, Unresolved(what, why)))
            elif dep_repo.startswith("oci://"):
                if _exact(dep.version):
                    todo.append((dep_repo, dep.name, dep.version, dep_where))
                else:
                    why = f"version {dep.version!r} is a range; ranges are resolved in classic repositories only"
                    unresolved.append((location, Unresolved(what, why)))
            else:  # the newest version of the repository's index the constraint allows, as `helm dependency` does
                try:
                    version = fetcher.resolve_version(dep_repo, dep.name, dep.version)
                except (FetchError, ConstraintError) as exc:
                    source = redact(f"{dep_repo} {dep.name} {dep.version}")
                    failures.append(DownloadFailure(source, dep_where, redact(str(exc)), isinstance(exc, NotUpstream)))
                    continue
                todo.append((dep_repo, dep.name, version, dep_where))
    return fetched, failures, unresolved


def _exact(version: str) -> bool:
    return bool(version) and not any(c in version for c in "^~<>=*xX| ,")


@dataclass
class StoredCharts:
    paths: set[str]  # bundle-relative files written under files/charts/
    content: dict[str, RepositoryContent]  # what the registry store keeps for the charts
    records: list[ChartRecord] = field(default_factory=list)


def store_charts(
    bundle_dir: Path, storage: RegistryStorage, project: str, charts: Sequence[FetchedChart]
) -> StoredCharts:
    """Write every chart as a package plus index.yaml under files/charts/ and as an OCI artifact at
    <project>/charts/<name>:<version>; return what pruning must keep."""
    stored = StoredCharts(set(), {})
    if not charts:
        return stored
    top = bundle_dir / CHARTS_DIR
    top.mkdir(parents=True, exist_ok=True)
    entries: dict[str, list[dict[str, Any]]] = {}
    for chart in sorted(charts, key=lambda c: (c.package.name, c.package.version)):
        path = top / chart.filename
        if not path.is_file() or path.read_bytes() != chart.download.data:
            atomic_write(path, chart.download.data)
        stored.paths.add(f"{CHARTS_DIR}/{chart.filename}")
        entry = {**chart.package.metadata, "urls": [chart.filename], "digest": chart.download.sha256}
        entries.setdefault(chart.package.name, []).append(entry)
        repo = f"{project}/charts/{chart.package.name}"
        oci = chart.download.oci
        if oci is not None:
            config, manifest = oci.config, oci.manifest
            chart_layer(manifest)  # checked when fetched; a chart artifact
        else:
            artifact = chart_artifact(chart.download.data, chart.package.metadata)
            config, manifest = artifact.config, artifact.manifest
        content = stored.content.setdefault(repo, RepositoryContent())
        for blob in (config, chart.download.data):
            digest = sha256_digest(blob)
            storage.put_blob(digest, blob)
            storage.link_blob(repo, digest)
            content.blobs.add(digest)
        manifest_digest = sha256_digest(manifest)
        storage.put_blob(manifest_digest, manifest)
        storage.link_manifest(repo, manifest_digest)
        storage.tag(repo, oci_tag(chart.package.version), manifest_digest)
        content.manifests.add(manifest_digest)
        content.tags[oci_tag(chart.package.version)] = manifest_digest
        stored.records.append(
            ChartRecord(
                name=chart.package.name,
                version=chart.package.version,
                source=redact(chart.download.source),
                location=chart.location,
                path=f"{CHARTS_DIR}/{chart.filename}",
                sha256=chart.download.sha256,
                repository=repo,
                tag=oci_tag(chart.package.version),
                digest=manifest_digest,
            )
        )
    index = {"apiVersion": "v1", "entries": entries}
    atomic_write(top / "index.yaml", yaml.safe_dump(index, sort_keys=False).encode())
    stored.paths.add(f"{CHARTS_DIR}/index.yaml")
    return stored
