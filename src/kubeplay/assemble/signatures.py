"""Upstream image signatures kept: cosign's `.sig`/`.att`/`.sbom` tags and OCI 1.1 referrers, beside the images.

For every bundled image, each digest upstream published (the index or manifest the tag named, and every
kept platform manifest) is looked up: the tags `sha256-<hex>.sig`, `.att`, `.sbom`, and its referrers, by
the referrers API or else the tag-schema index `sha256-<hex>`. What exists is stored byte-exact in the
bundle registry in the image's repository, under the same tags (referrers behind the tag-schema index,
which the deploy node's registry serves as a tag), so `cosign verify` against the deploy node finds what
it would have found upstream. A missing artifact is normal (most images have none); any other fault is
a warning, never a failed build. An image unchanged since the last build keeps its artifacts without a
request (state in the build directory).

The tag serves upstream's manifest or index byte-exact, also when the bundle holds only some of the
index's platforms (assemble/images.py), so `cosign verify IMAGE:TAG` resolves upstream's digest and finds
the signature of it; the platform manifests (unchanged) keep theirs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from kubeplay.assemble.images import ImagesResult
from kubeplay.bundle.manifest import ImageRecord
from kubeplay.catalog.model import ImageArtifact
from kubeplay.console import Output
from kubeplay.errors import FetchError
from kubeplay.fetch.http import Downloader
from kubeplay.fetch.mirrors import RegistryEndpoint, docker_repository, redact
from kubeplay.fetch.oci import Fetched, RegistryClient
from kubeplay.fetch.signatures import SignatureLookup
from kubeplay.fetch.workers import WorkerPool
from kubeplay.state import atomic_write
from kubeplay.store.registry import RegistryStorage, RepositoryContent


class StoredSignatures(BaseModel):
    """What one image's lookup stored: tags (tag -> manifest digest), manifests and blobs."""

    model_config = ConfigDict(extra="forbid")

    tags: dict[str, str] = {}
    manifests: list[str] = []
    blobs: list[str] = []


@dataclass
class SignaturesResult:
    """Per bundle repository: what to keep (merged into the prune list) and the tags found."""

    content: dict[str, RepositoryContent] = field(default_factory=dict)
    tags: dict[str, list[str]] = field(default_factory=dict)
    looked_up: int = 0
    warnings: list[str] = field(default_factory=list)


def _key(record: ImageRecord) -> str:
    return json.dumps([record.repository, record.upstream_digest, sorted(p.digest for p in record.platforms)])


def subject_digests(record: ImageRecord) -> list[str]:
    """The digests upstream may have signed: what the reference resolved to, and each kept platform manifest."""
    digests = [record.upstream_digest, *(p.digest for p in record.platforms)]
    return list(dict.fromkeys(digests))


class SignatureFetcher:
    """Looks up and stores the signature artifacts of built images (see the module docstring)."""

    def __init__(self, storage: RegistryStorage, downloader: Downloader, state_path: Path, *, out: Output) -> None:
        self.storage = storage
        self.downloader = downloader
        self.client = RegistryClient(downloader.clients, downloader.policy)
        self.state_path = state_path
        self.out = out
        self.state: dict[str, StoredSignatures] = {}
        self.lookup = SignatureLookup(self.client)
        if state_path.is_file():
            try:
                raw = json.loads(state_path.read_text(encoding="utf-8"))
                self.state = {k: StoredSignatures.model_validate(v) for k, v in raw.items()}
            except (OSError, ValueError, ValidationError):
                self.state = {}

    def _still_there(self, repository: str, stored: StoredSignatures) -> bool:
        return all(self.storage.tag_digest(repository, t) == d for t, d in stored.tags.items()) and all(
            self.storage.has_blob(b) for b in stored.blobs + stored.manifests
        )

    def run(self, artifacts: Sequence[ImageArtifact], records: Sequence[ImageRecord]) -> SignaturesResult:
        """Store the artifacts of every image in `records` (matched to `artifacts` by bundle repository)."""
        by_repository = {a.bundle_repository: a for a in artifacts}
        result = SignaturesResult()
        todo: list[tuple[ImageArtifact, ImageRecord]] = []
        fresh: dict[str, StoredSignatures] = {}
        for record in records:
            stored = self.state.get(_key(record))
            artifact = by_repository.get(record.repository)
            if stored is not None and self._still_there(record.repository, stored):
                fresh[_key(record)] = stored
            elif artifact is not None:
                todo.append((artifact, record))
        with WorkerPool(self.downloader.jobs, "kubeplay-signatures", self.downloader.stop) as pool:
            futures = {pool.submit(self._look_up, a, r): r for a, r in todo}
            for future in as_completed(futures):
                record = futures[future]
                try:
                    fresh[_key(record)] = future.result()
                except (FetchError, ValueError, KeyError) as exc:
                    result.warnings.append(f"{record.upstream}: signatures not kept: {redact(str(exc))}")
        result.looked_up = len(todo)
        for record in records:
            stored = fresh.get(_key(record))
            if stored is None:
                continue
            content = result.content.setdefault(record.repository, RepositoryContent())
            content.tags.update(stored.tags)
            content.manifests.update(stored.manifests)
            content.blobs.update(stored.blobs)
            result.tags[record.repository] = sorted(stored.tags)
        self.state = fresh
        atomic_write(self.state_path, json.dumps({k: v.model_dump() for k, v in sorted(fresh.items())}).encode())
        return result

    def _look_up(self, artifact: ImageArtifact, record: ImageRecord) -> StoredSignatures:
        endpoint = self.downloader.clients.mirrors.registry(artifact.registry)
        repository = docker_repository(artifact.registry, artifact.repository)
        existing = self.lookup.existing_tags(endpoint, repository)
        stored = StoredSignatures()
        for digest in subject_digests(record):
            for found in self.lookup.find(endpoint, repository, digest, existing):
                if found.kind == "referrers":
                    for descriptor in json.loads(found.manifest.data)["manifests"]:
                        child = self.client.manifest(endpoint, repository, str(descriptor["digest"]))
                        self._store(endpoint, repository, record.repository, child, stored)
                    self.storage.put_blob(found.manifest.digest, found.manifest.data)
                    self.storage.link_manifest(record.repository, found.manifest.digest)
                    stored.manifests.append(found.manifest.digest)
                else:
                    self._store(endpoint, repository, record.repository, found.manifest, stored)
                self.storage.tag(record.repository, found.tag, found.manifest.digest)
                stored.tags[found.tag] = found.manifest.digest
        return stored

    def _store(
        self,
        endpoint: RegistryEndpoint,
        repository: str,
        bundle_repository: str,
        found: Fetched,
        into: StoredSignatures,
    ) -> None:
        """Store an artifact manifest and the (small) blobs it references, each checked against its digest."""
        document = json.loads(found.data)
        for descriptor in [document.get("config"), *document.get("layers", [])]:
            if not isinstance(descriptor, dict) or not isinstance(descriptor.get("digest"), str):
                continue
            digest = descriptor["digest"]
            if not self.storage.has_blob(digest):
                self.storage.put_blob(digest, self.client.small_blob(endpoint, repository, digest))
            self.storage.link_blob(bundle_repository, digest)
            into.blobs.append(digest)
        self.storage.put_blob(found.digest, found.data)
        self.storage.link_manifest(bundle_repository, found.digest)
        into.manifests.append(found.digest)


def keep_signatures(images: ImagesResult, found: SignaturesResult) -> None:
    """Merge the artifacts into what the prune keeps, and name their tags in each image's record."""
    for repository, content in found.content.items():
        kept = images.content.setdefault(repository, RepositoryContent())
        kept.tags.update(content.tags)
        kept.manifests |= content.manifests
        kept.blobs |= content.blobs
    images.records[:] = [r.model_copy(update={"signatures": found.tags.get(r.repository, [])}) for r in images.records]


def fetch_signatures(
    storage: RegistryStorage,
    downloader: Downloader,
    state_dir: Path,
    artifacts: Sequence[ImageArtifact],
    images: ImagesResult,
    *,
    out: Output,
) -> None:
    """The build's signature phase: look up, store, keep, record; warnings for what could not be read."""
    fetcher = SignatureFetcher(storage, downloader, state_dir / "signatures.json", out=out)
    found = fetcher.run(artifacts, images.records)
    for warning in found.warnings:
        out.warn(warning)
    keep_signatures(images, found)
    signed = sum(1 for tags in found.tags.values() if tags)
    out.info(f"signatures: {signed} of {len(images.records)} images came with upstream signature artifacts")
