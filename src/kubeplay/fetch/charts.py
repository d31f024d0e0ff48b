"""Helm chart packages from upstream, through the same mirrors, credentials and retries as everything else.

A classic repository: its index.yaml, the entry for the exact version, the package from the entry's URL,
checked against the entry's digest. An OCI repository (`oci://host/path`): the manifest of
`<path>/<name>:<version>`, its chart layer, checked against the layer digest; the manifest and config are
kept so the bundle serves the artifact byte-exact. Packages are cached by sha256 in `cache_dir`, so
`kubeplay plan` and `kubeplay build` fetch a chart once.
"""

from __future__ import annotations

import hashlib
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubeplay.catalog.chart_oci import chart_layer, oci_tag
from kubeplay.catalog.semver import best_match
from kubeplay.errors import DigestMismatch, FetchError, NotUpstream
from kubeplay.fetch.clients import ClientPool
from kubeplay.fetch.mirrors import docker_repository
from kubeplay.fetch.oci import RegistryClient
from kubeplay.fetch.retry import RetryPolicy
from kubeplay.state import atomic_write

MAX_PACKAGE = 64 << 20
MAX_INDEX = 64 << 20  # index.yaml of a big repository (bitnami's was ~20 MiB) is read whole


@dataclass(frozen=True)
class OciParts:
    """An OCI chart artifact as upstream stored it: manifest and config bytes (the chart is the package)."""

    manifest: bytes
    config: bytes


@dataclass(frozen=True)
class ChartDownload:
    data: bytes  # the package (.tgz)
    source: str  # where it came from (upstream URL or oci:// reference)
    oci: OciParts | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


class ChartFetcher:
    """Fetches chart packages by repository, name and exact version; raise FetchError subclasses:
    NotUpstream (no such chart or version), DigestMismatch (index digest differs from the download)."""

    def __init__(self, clients: ClientPool, policy: RetryPolicy | None = None, cache_dir: Path | None = None) -> None:
        self.clients = clients
        self.policy = policy or RetryPolicy(attempts=3)
        self.registry = RegistryClient(clients, self.policy)
        self.cache_dir = cache_dir
        self._indexes: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def fetch(self, repo: str, name: str, version: str) -> ChartDownload:
        if repo.startswith("oci://"):
            return self._from_oci(repo, name, version)
        return self._from_index(repo, name, version)

    # -- classic repositories ----------------------------------------------------------------------

    def index(self, repo: str) -> dict[str, Any]:
        """The repository's index.yaml (read once per run)."""
        with self._lock:
            if repo in self._indexes:
                return self._indexes[repo]
        url = f"{repo.rstrip('/')}/index.yaml"
        try:
            doc = yaml.safe_load(self._get(url, MAX_INDEX))
        except yaml.YAMLError as exc:
            raise FetchError(f"{url}: not a chart repository index: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
            raise FetchError(f"{url}: not a chart repository index (no entries)")
        with self._lock:
            self._indexes[repo] = doc
        return doc

    def resolve_version(self, repo: str, name: str, constraint: str) -> str:
        """The highest version of chart `name` in classic repository `repo` satisfying a Helm constraint
        (`~1.2`, `^2.0.0`, `>=1 <2`); raise NotUpstream when none does, ConstraintError for a bad one."""
        entries = self.index(repo)["entries"].get(name)
        versions = [str(e.get("version")) for e in entries or [] if isinstance(e, dict)]
        found = best_match(constraint, versions)
        if found is None:
            raise NotUpstream(f"no version of chart {name} in {repo} satisfies {constraint!r}")
        return found

    def _from_index(self, repo: str, name: str, version: str) -> ChartDownload:
        entries = self.index(repo)["entries"].get(name)
        if not isinstance(entries, list) or not entries:
            raise NotUpstream(f"{repo} has no chart {name!r}")
        entry = next((e for e in entries if isinstance(e, dict) and str(e.get("version")) == version), None)
        if entry is None:
            have = ", ".join(str(e.get("version")) for e in entries[:8] if isinstance(e, dict))
            raise NotUpstream(f"chart {name} has no version {version} in {repo} (newest: {have})")
        urls = entry.get("urls") or []
        if not urls:
            raise FetchError(f"{repo}: index entry {name} {version} has no urls")
        url = urllib.parse.urljoin(f"{repo.rstrip('/')}/", str(urls[0]))
        want = str(entry.get("digest") or "").removeprefix("sha256:").lower() or None
        cached = self._cached(want)
        data = cached if cached is not None else self._get(url, MAX_PACKAGE)
        got = hashlib.sha256(data).hexdigest()
        if want is not None and got != want:
            raise DigestMismatch(f"{url}: index.yaml says sha256:{want}, the download has sha256:{got}")
        self._keep(got, data)
        return ChartDownload(data, url)

    # -- OCI registries -----------------------------------------------------------------------------

    def _from_oci(self, repo: str, name: str, version: str) -> ChartDownload:
        host, _, path = repo.removeprefix("oci://").partition("/")
        repository = docker_repository(host, f"{path}/{name}" if path else name)
        endpoint = self.clients.mirrors.registry(host)
        source = f"oci://{host}/{repository}:{version}"
        try:
            manifest = self.registry.manifest(endpoint, repository, oci_tag(version))
        except NotUpstream:
            raise NotUpstream(f"{source}: no such chart version (HTTP 404)") from None
        try:
            config_digest, layer_digest = chart_layer(manifest.data)
        except (ValueError, KeyError) as exc:
            raise FetchError(f"{source}: {exc}") from None
        config = self.registry.small_blob(endpoint, repository, config_digest)
        hexd = layer_digest.removeprefix("sha256:")
        data = self._cached(hexd)
        if data is None:
            data = self.registry.small_blob(endpoint, repository, layer_digest)  # verified against the digest
            self._keep(hexd, data)
        return ChartDownload(data, source, OciParts(manifest.data, config))

    # -- plumbing -----------------------------------------------------------------------------------

    def _cached(self, hexd: str | None) -> bytes | None:
        if self.cache_dir is None or hexd is None:
            return None
        path = self.cache_dir / f"{hexd}.tgz"
        if path.is_file():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() == hexd:
                return data
        return None

    def _keep(self, hexd: str, data: bytes) -> None:
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.cache_dir / f"{hexd}.tgz", data)

    def _get(self, url: str, limit: int) -> bytes:
        response = self.clients.request(
            self.policy, "GET", url, task="fetching charts", not_found=f"{url}: not found (HTTP 404)"
        )
        if len(response.content) > limit:
            raise FetchError(f"{url}: larger than {limit} bytes; refusing it")
        return response.content
