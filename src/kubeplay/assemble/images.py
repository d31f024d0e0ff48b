"""Images into the bundle registry: resolve manifests, keep the requested platforms, fetch blobs once.

1. Images already in the bundle for the same reference, platforms and repository (per the state file,
   with every manifest and blob still on disk) are skipped without a single request.
2. The others are resolved in parallel: the tag's manifest or index, one platform manifest per arch
   (byte-exact), and for a single-platform image its config (to learn its arch).
3. Every blob not yet in the store is downloaded once, in parallel, however many images share it.
4. Each image is linked into its repository and tagged as soon as all its blobs are verified in place
   (on a thread pool, while other blobs still download) — the tag last, so a kill leaves no tag
   pointing at something missing. The tag names upstream's manifest or index byte-exact (same digest
   as upstream, so upstream's signatures of it apply); an index that lists platforms the bundle does
   not carry is served unchanged, those platforms' manifests absent, and the index cut to the bundled
   platforms is kept beside it by digest (`ImageRecord.cut_index`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from kubeplay.bundle.manifest import ImageRecord, PlatformRecord
from kubeplay.catalog.model import Checksum, ImageArtifact
from kubeplay.console import Output
from kubeplay.errors import FetchError, NotUpstream
from kubeplay.fetch.http import Downloader, DownloadFailure, DownloadItem
from kubeplay.fetch.mirrors import RegistryEndpoint, docker_repository, redact
from kubeplay.fetch.oci import Fetched, RegistryClient
from kubeplay.fetch.platforms import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    arch_of_platform,
    config_platform,
    manifest_blobs,
    platform_string,
    select_platforms,
)
from kubeplay.fetch.workers import WorkerPool
from kubeplay.state import atomic_write
from kubeplay.store.registry import RegistryStorage, RepositoryContent


class StoredImage(BaseModel):
    """What the state file remembers of one image already in the bundle."""

    model_config = ConfigDict(extra="forbid")

    record: ImageRecord
    manifests: list[str]
    blobs: list[str]


@dataclass
class ResolvedImage:
    artifact: ImageArtifact
    endpoint: RegistryEndpoint
    repository: str  # on the endpoint
    top: Fetched
    index: bytes | None  # the index listing only the kept platforms (None for a single-platform image)
    children: dict[str, Fetched]  # arch -> platform manifest
    missing: list[str]
    blobs: dict[str, int] = field(default_factory=dict)  # digest -> size
    config_bytes: bytes | None = None


@dataclass
class ImagesResult:
    records: list[ImageRecord]
    failed: list[DownloadFailure]
    content: dict[str, RepositoryContent]
    bytes_fetched: int
    skipped: int
    resolved: int


class StoreWriter:
    """Writes each image into the store (`write`) on a thread pool as soon as all its blobs are in place.

    `expect(image)` before its blobs are added to the download batch; `blob_done` is the batch's on_done.
    `stored(image)` waits for the image's write (or, should it not have started, writes it now).
    """

    def __init__(self, write: Callable[[ResolvedImage], StoredImage], jobs: int) -> None:
        self._write = write
        self._lock = threading.Lock()
        self._done: set[str] = set()
        self._failed: set[str] = set()
        self._waiting: dict[str, list[ResolvedImage]] = {}  # blob digest -> images waiting for it
        self._pending: dict[int, set[str]] = {}  # id(image) -> its blobs not yet in place
        self._writes: dict[int, Future[StoredImage]] = {}
        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="kubeplay-store")

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)

    def expect(self, image: ResolvedImage) -> None:
        with self._lock:
            if self._failed.intersection(image.blobs):
                return
            pending = set(image.blobs) - self._done
            if pending:
                self._pending[id(image)] = pending
                for digest in pending:
                    self._waiting.setdefault(digest, []).append(image)
                return
        self._submit(image)

    def blob_done(self, item: DownloadItem, ok: bool) -> None:
        digest = f"sha256:{item.checksum.hex}" if item.checksum else ""
        ready: list[ResolvedImage] = []
        with self._lock:
            (self._done if ok else self._failed).add(digest)
            for image in self._waiting.pop(digest, []):
                pending = self._pending.get(id(image))
                if pending is None:
                    continue
                pending.discard(digest)
                if not ok or not pending:
                    del self._pending[id(image)]
                    if ok:
                        ready.append(image)
        for image in ready:
            self._submit(image)

    def _submit(self, image: ResolvedImage) -> None:
        future = self._pool.submit(self._write, image)
        with self._lock:
            self._writes[id(image)] = future

    def stored(self, image: ResolvedImage) -> StoredImage:
        with self._lock:
            future = self._writes.get(id(image))
        return future.result() if future is not None else self._write(image)


def image_key(artifact: ImageArtifact, arches: Sequence[str]) -> str:
    return "|".join(
        (artifact.upstream, artifact.digest or "", artifact.tag or "", artifact.bundle_repository, ",".join(arches))
    )


def _image_arches(artifact: ImageArtifact, arches: Sequence[str]) -> list[str]:
    return [a for a in arches if not artifact.arches or a in artifact.arches] or list(arches)


class ImageFetcher:
    """Runs the image step of a build into `storage`, remembering what it did in `state_path`."""

    def __init__(
        self,
        storage: RegistryStorage,
        downloader: Downloader,
        state_path: Path,
        *,
        out: Output,
        platform_policy: str = "strict",
    ) -> None:
        self.storage = storage
        self.out = out
        self.downloader = downloader
        self.client = RegistryClient(downloader.clients, downloader.policy)
        self.mirrors = downloader.clients.mirrors
        self.state_path = state_path
        self.policy = platform_policy
        self.state: dict[str, StoredImage] = {}
        if state_path.is_file():
            try:
                raw = json.loads(state_path.read_text(encoding="utf-8"))
                self.state = {k: StoredImage.model_validate(v) for k, v in raw.items()}
            except (OSError, ValueError):
                self.state = {}

    def _save_state(self) -> None:
        body = {k: v.model_dump(mode="json") for k, v in sorted(self.state.items())}
        atomic_write(self.state_path, json.dumps(body, separators=(",", ":")).encode())

    def _still_there(self, stored: StoredImage, artifact: ImageArtifact) -> bool:
        repo = stored.record.repository
        if stored.record.digest != stored.record.upstream_digest:
            return False  # written before a cut index was served as upstream's bytes: store it anew
        if artifact.tag and self.storage.tag_digest(repo, artifact.tag) != stored.record.digest:
            return False
        return all(self.storage.has_manifest(repo, d) for d in stored.manifests) and all(
            self.storage.has_blob(d) for d in stored.blobs
        )

    def run(self, images: Sequence[ImageArtifact], arches: Sequence[str]) -> ImagesResult:
        result = ImagesResult([], [], {}, 0, 0, 0)
        todo: list[ImageArtifact] = []
        unique = {image_key(a, arches): a for a in images}
        for artifact in unique.values():
            stored = self.state.get(image_key(artifact, arches))
            if stored is not None and self._still_there(stored, artifact):
                self._keep(result, artifact, stored)
                result.skipped += 1
            else:
                todo.append(artifact)
        # what the plan no longer lists is pruned from the store; forget it here too
        self.state = {k: v for k, v in self.state.items() if k in unique}
        if not todo:
            self._save_state()
            return result
        items: dict[str, DownloadItem] = {}
        resolved: list[ResolvedImage] = []
        # Blobs of an image start downloading as soon as it is resolved, while others still resolve; an
        # image is written into the store as soon as its last blob is verified, while others download.
        # (the batch is left first: downloads still running when something fails may hand the writer an image)
        with StoreWriter(self._write, self.downloader.jobs) as writer, self.downloader.batch("image blobs") as batch:
            for image in self._resolve_each(todo, arches, result):
                resolved.append(image)
                writer.expect(image)
                new: list[DownloadItem] = []
                for digest, size in image.blobs.items():
                    if digest not in items:
                        url = self.client.blob_url(image.endpoint, image.repository, digest)
                        checksum = Checksum(algorithm="sha256", hex=digest.removeprefix("sha256:"))
                        label = f"{image.artifact.variable} ({image.artifact.upstream})"
                        items[digest] = DownloadItem(url, self.storage.blob_path(digest), checksum, size, label)
                        new.append(items[digest])
                batch.add(new, on_done=writer.blob_done)
            report = batch.finish()
            result.resolved = len(resolved)
            result.bytes_fetched = report.bytes_fetched
            failed_by_url = {f.url: f for f in report.failed}
            for image in resolved:
                bad = [(d, failed_by_url[u]) for d in image.blobs if (u := redact(items[d].url)) in failed_by_url]
                if bad:
                    more = f" (and {len(bad) - 1} more blobs)" if len(bad) > 1 else ""
                    reason = f"blob {bad[0][0]}: {bad[0][1].reason}{more}"
                    result.failed.append(DownloadFailure(image.artifact.upstream, image.artifact.variable, reason))
                    continue
                stored = writer.stored(image)
                self.state[image_key(image.artifact, arches)] = stored
                self._keep(result, image.artifact, stored)
        self._save_state()
        return result

    def _keep(self, result: ImagesResult, artifact: ImageArtifact, stored: StoredImage) -> None:
        result.records.append(stored.record)
        content = result.content.setdefault(stored.record.repository, RepositoryContent())
        if artifact.tag:
            content.tags[artifact.tag] = stored.record.digest
        content.manifests.update(stored.manifests)
        content.blobs.update(stored.blobs)

    def _resolve_each(
        self, todo: Sequence[ImageArtifact], arches: Sequence[str], result: ImagesResult
    ) -> Iterator[ResolvedImage]:
        """Resolve images in parallel, yielding each as it is ready; failures go into `result`."""

        def one(artifact: ImageArtifact) -> ResolvedImage | DownloadFailure:
            try:
                return self._resolve(artifact, _image_arches(artifact, arches))
            except (FetchError, ValueError, KeyError) as exc:
                mismatch = isinstance(exc, NotUpstream)
                return DownloadFailure(artifact.upstream, artifact.variable, redact(str(exc)), mismatch)

        with WorkerPool(self.downloader.jobs, "kubeplay-oci", self.downloader.stop) as pool:
            for future in as_completed([pool.submit(one, a) for a in todo]):
                outcome = future.result()
                if isinstance(outcome, DownloadFailure):
                    result.failed.append(outcome)
                else:
                    yield outcome

    def _resolve(self, artifact: ImageArtifact, arches: list[str]) -> ResolvedImage:
        endpoint = self.mirrors.registry(artifact.registry)
        repository = docker_repository(artifact.registry, artifact.repository)
        reference = artifact.digest or artifact.tag
        if reference is None:
            raise FetchError("image reference has neither tag nor digest")
        top = self.client.manifest(endpoint, repository, reference)
        if top.media_type in INDEX_TYPES:
            selection = select_platforms(top.data, arches)
            image = ResolvedImage(artifact, endpoint, repository, top, selection.index, {}, selection.missing)
            for arch, desc in selection.chosen.items():
                child = self.client.manifest(endpoint, repository, str(desc["digest"]))
                if child.media_type not in MANIFEST_TYPES:
                    raise FetchError(f"{platform_string(desc.get('platform') or {})}: unsupported {child.media_type}")
                image.children[arch] = child
        elif top.media_type in MANIFEST_TYPES:
            config_digest = json.loads(top.data)["config"]["digest"]
            config = self.client.small_blob(endpoint, repository, config_digest)
            self.storage.put_blob(config_digest, config)  # verified; the blob download then skips it
            own_arch = arch_of_platform(config_platform(config))
            missing = [a for a in arches if a != own_arch]
            image = ResolvedImage(artifact, endpoint, repository, top, None, {}, missing)
            if own_arch is not None and own_arch in arches:
                image.children[own_arch] = top
            image.config_bytes = config
        else:
            raise FetchError(f"unsupported manifest type {top.media_type!r} (schema 1 images are not supported)")
        if not image.children:
            raise FetchError(f"no platform for {', '.join(arches)} in this image")
        if image.missing:
            message = f"{artifact.upstream} has no {', '.join(image.missing)} image"
            if (artifact.platform_policy or self.policy) == "strict":
                where = f"{artifact.variable}." if artifact.origin == "user" else ""
                raise NotUpstream(f"{message} ({where}platform_policy: strict; set it to warn to bundle what exists)")
            self.out.warn(f"{message}; bundling {', '.join(image.children)} only")
        for child in image.children.values():
            for digest, size in manifest_blobs(child.data):
                image.blobs[digest] = size
        return image

    def _write(self, image: ResolvedImage) -> StoredImage:
        repo = image.artifact.bundle_repository
        storage = self.storage
        for digest in image.blobs:
            storage.link_blob(repo, digest)
        manifests: list[str] = []
        platforms: list[PlatformRecord] = []
        for arch, child in image.children.items():
            storage.put_blob(child.digest, child.data)
            storage.link_manifest(repo, child.digest)
            manifests.append(child.digest)
            blobs_size = sum(size for _, size in manifest_blobs(child.data))
            platform = _platform_of(image, arch, child)
            platforms.append(
                PlatformRecord(
                    platform=platform,
                    arch=arch,
                    digest=child.digest,
                    media_type=child.media_type,
                    size=len(child.data),
                    blobs_size=blobs_size,
                )
            )
        # The reference resolves to upstream's bytes, so its digest is upstream's and so are the signatures of
        # it (cosign looks up `sha256-<digest>.sig` of what the tag resolves to). An index listing platforms
        # the bundle lacks is served unchanged all the same (clients fetch only their platform's manifest; the
        # registry checks children on push, not on read); the cut index is kept by digest for `push`.
        digest, media_type = image.top.digest, image.top.media_type
        cut_index: str | None = None
        size = sum(image.blobs.values()) + sum(len(c.data) for c in image.children.values())
        if image.index is not None:
            storage.put_blob(digest, image.top.data)
            storage.link_manifest(repo, digest)
            manifests.append(digest)
            size += len(image.top.data)
            if image.index != image.top.data:
                cut_index = "sha256:" + hashlib.sha256(image.index).hexdigest()
                storage.put_blob(cut_index, image.index)
                storage.link_manifest(repo, cut_index)
                manifests.append(cut_index)
                size += len(image.index)
        if image.artifact.tag:
            storage.tag(repo, image.artifact.tag, digest)
        record = ImageRecord(
            name=image.artifact.name,
            variable=image.artifact.variable,
            upstream=image.artifact.upstream,
            upstream_digest=image.top.digest,
            repository=repo,
            tag=image.artifact.tag,
            digest=digest,
            media_type=media_type,
            cut_index=cut_index,
            platforms=platforms,
            missing_arches=image.missing,
            size=size,
        )
        return StoredImage(record=record, manifests=manifests, blobs=sorted(image.blobs))


def _platform_of(image: ResolvedImage, arch: str, child: Fetched) -> str:
    if image.index is not None:
        for desc in json.loads(image.top.data).get("manifests") or []:
            if desc.get("digest") == child.digest:
                return platform_string(desc.get("platform") or {})
    if image.config_bytes is not None:
        return platform_string(config_platform(image.config_bytes))
    return f"linux/{arch}"
