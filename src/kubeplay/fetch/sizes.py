"""`kubeplay plan --sizes`: what the bundle will weigh, asked of upstream before anything is downloaded.

Files: one HEAD each (through the mirrors, with their credentials), its Content-Length. Images: the
tag's manifest or index, the platform manifest of every arch the image is planned for, and the sizes
those manifests declare for their config and layers; a blob shared by several images or arches is
counted once. Nothing is written anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import Future, as_completed
from dataclasses import dataclass, field

from kubeplay.catalog.model import FileArtifact, ImageArtifact, Plan
from kubeplay.errors import FetchError, Interrupted
from kubeplay.fetch.clients import ClientPool
from kubeplay.fetch.mirrors import docker_repository, redact
from kubeplay.fetch.oci import RegistryClient
from kubeplay.fetch.platforms import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    arch_of_platform,
    config_platform,
    manifest_blobs,
    select_platforms,
)
from kubeplay.fetch.retry import RetryPolicy
from kubeplay.fetch.workers import WorkerPool


@dataclass(frozen=True)
class ImageSize:
    """One image's manifests (bytes) and blobs (digest -> size) per arch it is planned for."""

    manifests: int
    blobs: dict[str, dict[str, int]]  # arch -> {digest: size}
    missing: tuple[str, ...] = ()  # planned arches upstream has no image for


@dataclass(frozen=True)
class SizeProblem:
    what: str  # the URL or image reference
    label: str  # its kubespray variable or bundle.yaml location
    reason: str


@dataclass
class PlanSizes:
    """Sizes of a plan's files (by bundle path) and images (by upstream reference); what could not be sized."""

    files: dict[str, int] = field(default_factory=dict)  # bundle path -> bytes
    file_arches: dict[str, str] = field(default_factory=dict)  # bundle path -> arch (or noarch)
    images: dict[str, ImageSize] = field(default_factory=dict)
    problems: list[SizeProblem] = field(default_factory=list)

    @property
    def files_total(self) -> int:
        return sum(self.files.values())

    def blobs(self, arch: str | None = None) -> dict[str, int]:
        """Every distinct blob (of one arch, or of all), each once."""
        out: dict[str, int] = {}
        for image in self.images.values():
            for blob_arch, blobs in image.blobs.items():
                if arch is None or blob_arch == arch:
                    out.update(blobs)
        return out

    @property
    def images_total(self) -> int:
        return sum(self.blobs().values()) + sum(i.manifests for i in self.images.values())

    @property
    def total(self) -> int:
        return self.files_total + self.images_total

    def arch_total(self, arch: str) -> int:
        """Files of `arch` plus the distinct blobs its images need (noarch files not included)."""
        files = sum(size for path, size in self.files.items() if self.file_arches[path] == arch)
        return files + sum(self.blobs(arch).values())

    def of_file(self, artifact: FileArtifact) -> int | None:
        return self.files.get(artifact.path)

    def of_image(self, artifact: ImageArtifact) -> int | None:
        image = self.images.get(artifact.upstream)
        if image is None:
            return None
        blobs: dict[str, int] = {}
        for arch_blobs in image.blobs.values():
            blobs.update(arch_blobs)
        return image.manifests + sum(blobs.values())


class PlanSizer:
    """Asks upstream for the size of every file and image of a plan, `jobs` requests at a time."""

    def __init__(self, clients: ClientPool, policy: RetryPolicy | None = None, *, jobs: int = 16) -> None:
        self.clients = clients
        self.policy = policy or RetryPolicy(attempts=3)
        self.registry = RegistryClient(clients, self.policy)
        self.jobs = max(1, jobs)

    def measure(self, plan: Plan) -> PlanSizes:
        """Sizes of every file and image in `plan`; failures become problems. Raises Interrupted on Ctrl-C."""
        sizes = PlanSizes()
        files = {f.path: f for f in plan.files}
        images = {i.upstream: i for i in plan.images}
        with WorkerPool(self.jobs, "kubeplay-sizes", self.clients.stop) as pool:
            futures: dict[Future[int | ImageSize], FileArtifact | ImageArtifact] = {
                pool.submit(self._file, f): f for f in files.values()
            }
            futures.update({pool.submit(self._image, i, plan.arches): i for i in images.values()})
            for future in as_completed(futures):
                artifact = futures[future]
                what = artifact.url if isinstance(artifact, FileArtifact) else artifact.upstream
                try:
                    result = future.result()
                except Interrupted:
                    raise
                except (FetchError, ValueError, KeyError) as exc:
                    sizes.problems.append(SizeProblem(redact(what), artifact.variable, redact(str(exc))))
                    continue
                if isinstance(artifact, FileArtifact):
                    assert isinstance(result, int)
                    sizes.files[artifact.path] = result
                    sizes.file_arches[artifact.path] = artifact.arch
                else:
                    assert isinstance(result, ImageSize)
                    sizes.images[artifact.upstream] = result
        sizes.problems.sort(key=lambda p: p.what)
        return sizes

    def _file(self, artifact: FileArtifact) -> int:
        response = self.clients.request(self.policy, "HEAD", artifact.url, task="sizing")
        length = response.headers.get("content-length", "")
        if not length.isdigit():
            raise FetchError("the server did not say its size (no Content-Length)")
        return int(length)

    def _image(self, artifact: ImageArtifact, plan_arches: Sequence[str]) -> ImageSize:
        arches = [a for a in plan_arches if not artifact.arches or a in artifact.arches] or list(plan_arches)
        endpoint = self.clients.mirrors.registry(artifact.registry)
        repository = docker_repository(artifact.registry, artifact.repository)
        reference = artifact.digest or artifact.tag
        if reference is None:
            raise FetchError("image reference has neither tag nor digest")
        top = self.registry.manifest(endpoint, repository, reference)
        blobs: dict[str, dict[str, int]] = {}
        manifests = len(top.data)
        if top.media_type in INDEX_TYPES:
            selection = select_platforms(top.data, arches)
            if selection.index != top.data:  # the build keeps the index cut to these platforms beside upstream's
                manifests += len(selection.index)
            for arch, desc in selection.chosen.items():
                child = self.registry.manifest(endpoint, repository, str(desc["digest"]))
                if child.media_type not in MANIFEST_TYPES:
                    raise FetchError(f"unsupported platform manifest type {child.media_type!r}")
                manifests += len(child.data)
                blobs[arch] = dict(manifest_blobs(child.data))
        elif top.media_type in MANIFEST_TYPES:
            config_digest = str(json.loads(top.data)["config"]["digest"])
            own = arch_of_platform(config_platform(self.registry.small_blob(endpoint, repository, config_digest)))
            if own in arches:
                blobs[own] = dict(manifest_blobs(top.data))
        else:
            raise FetchError(f"unsupported manifest type {top.media_type!r}")
        if not blobs:
            raise FetchError(f"no platform for {', '.join(arches)} in this image")
        return ImageSize(manifests, blobs, tuple(a for a in arches if a not in blobs))
