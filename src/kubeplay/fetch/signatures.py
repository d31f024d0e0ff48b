"""Which signature artifacts upstream published for a digest: cosign's `.sig`/`.att`/`.sbom` tags and OCI 1.1
referrers (by the referrers API, else the tag-schema index `sha256-<hex>`).

Used by the build (assemble/signatures.py stores what is found) and by `kubeplay plan --signatures` (only
says what exists). Reads only; a missing artifact is normal and not an error.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import as_completed
from dataclasses import dataclass, field

from kubeplay.catalog.model import ImageArtifact, Plan
from kubeplay.errors import FetchError, Interrupted, NotUpstream
from kubeplay.fetch.clients import ClientPool
from kubeplay.fetch.mirrors import RegistryEndpoint, docker_repository, redact
from kubeplay.fetch.oci import Fetched, RegistryClient
from kubeplay.fetch.platforms import INDEX_TYPES, platform_string, select_platforms
from kubeplay.fetch.retry import RetryPolicy
from kubeplay.fetch.workers import WorkerPool

TAG_SUFFIXES = (".sig", ".att", ".sbom")
TAG_LIST_LIMIT = 1000  # a full first page may be partial: then every artifact tag is asked for instead


@dataclass(frozen=True)
class FoundArtifact:
    """One artifact manifest upstream holds for `subject`, under `tag`; for referrers, `tag` is the
    tag-schema name `sha256-<hex>` and `manifest` the (non-empty) referrers index."""

    subject: str
    tag: str
    manifest: Fetched
    kind: str  # "sig", "att", "sbom" or "referrers"


class SignatureLookup:
    """Asks a registry for the signature artifacts of digests; remembers registries without a referrers API."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self.no_referrers_api: set[str] = set()
        self.lock = threading.Lock()

    def existing_tags(self, endpoint: RegistryEndpoint, repository: str) -> set[str] | None:
        """The repository's tags, so only artifacts that exist are asked for; None when the list may be partial."""
        try:
            tags = self.client.tag_list(endpoint, repository, TAG_LIST_LIMIT)
        except FetchError:
            return None
        return set(tags) if len(tags) < TAG_LIST_LIMIT else None

    def find(
        self, endpoint: RegistryEndpoint, repository: str, digest: str, existing: set[str] | None
    ) -> list[FoundArtifact]:
        """The artifacts of `digest` (tags in TAG_SUFFIXES order, then referrers); FetchError for a fault
        other than "not there"."""
        hexd = digest.removeprefix("sha256:")
        found: list[FoundArtifact] = []
        for suffix in TAG_SUFFIXES:
            tag = f"sha256-{hexd}{suffix}"
            if existing is not None and tag not in existing:
                continue
            manifest = self._manifest(endpoint, repository, tag)
            if manifest is not None:
                found.append(FoundArtifact(digest, tag, manifest, suffix[1:]))
        index = self.referrers(endpoint, repository, digest, existing)
        if index is not None and json.loads(index.data).get("manifests"):
            found.append(FoundArtifact(digest, f"sha256-{hexd}", index, "referrers"))
        return found

    def referrers(
        self, endpoint: RegistryEndpoint, repository: str, digest: str, existing: set[str] | None
    ) -> Fetched | None:
        """The referrers index of `digest`: the OCI 1.1 API, else the tag-schema tag `sha256-<hex>`.

        A registry that answered the API with an error once is not asked again by this lookup."""
        if endpoint.base not in self.no_referrers_api:
            try:
                return self.client.referrers(endpoint, repository, digest)
            except FetchError:  # no referrers API (404, or a registry that refuses the path)
                with self.lock:
                    self.no_referrers_api.add(endpoint.base)
        tag = f"sha256-{digest.removeprefix('sha256:')}"
        if existing is not None and tag not in existing:
            return None
        return self._manifest(endpoint, repository, tag)

    def _manifest(self, endpoint: RegistryEndpoint, repository: str, reference: str) -> Fetched | None:
        try:
            return self.client.manifest(endpoint, repository, reference)
        except NotUpstream:
            return None


@dataclass(frozen=True)
class SignedSubject:
    """One digest of an image that upstream published artifacts for."""

    what: str  # "index", "manifest", or the platform (linux/arm64/v8)
    digest: str
    kinds: tuple[str, ...]  # "sig", "att", "sbom", "referrers"
    tags: tuple[str, ...]


@dataclass(frozen=True)
class ImageSignatures:
    """What `kubeplay plan --signatures` found for one image (nothing when `subjects` is empty)."""

    subjects: tuple[SignedSubject, ...]

    @property
    def kinds(self) -> list[str]:
        found = {k for s in self.subjects for k in s.kinds}
        return [k for k in (*(s[1:] for s in TAG_SUFFIXES), "referrers") if k in found]

    def describe(self) -> str:
        """e.g. `index: sig att; linux/amd64: referrers`, or `no` for an image without any."""
        return "; ".join(f"{s.what}: {' '.join(s.kinds)}" for s in self.subjects) or "no"


def image_subjects(top: Fetched, arches: list[str]) -> list[tuple[str, str]]:
    """(what, digest) the build looks up for an image: the manifest or index the reference resolves to, and
    each platform manifest the bundle keeps (named by the index; not fetched)."""
    if top.media_type not in INDEX_TYPES:
        return [("manifest", top.digest)]
    selection = select_platforms(top.data, arches)
    chosen = [(platform_string(d.get("platform") or {}), str(d["digest"])) for d in selection.chosen.values()]
    return [("index", top.digest), *chosen]


def signed_subjects(
    lookup: SignatureLookup, endpoint: RegistryEndpoint, repository: str, subjects: list[tuple[str, str]]
) -> ImageSignatures:
    """Which of `subjects` upstream published signature artifacts for (the repository's tags read once)."""
    existing = lookup.existing_tags(endpoint, repository)
    found: list[SignedSubject] = []
    for what, digest in subjects:
        artifacts = lookup.find(endpoint, repository, digest, existing)
        if artifacts:
            found.append(SignedSubject(what, digest, tuple(a.kind for a in artifacts), tuple(a.tag for a in artifacts)))
    return ImageSignatures(tuple(found))


@dataclass
class PlanSignatures:
    """`kubeplay plan --signatures`: per image (by upstream reference) what upstream signed; what could not
    be checked (reference, label, reason)."""

    images: dict[str, ImageSignatures] = field(default_factory=dict)
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def signed(self) -> int:
        return sum(1 for s in self.images.values() if s.subjects)

    def count(self, kind: str) -> int:
        """Images with at least one artifact of `kind` ("sig" … "referrers")."""
        return sum(1 for s in self.images.values() if kind in s.kinds)


def look_up_plan(
    clients: ClientPool, plan: Plan, *, jobs: int = 16, policy: RetryPolicy | None = None
) -> PlanSignatures:
    """Ask upstream (through the mirrors) which signature artifacts each image of `plan` has, as the build
    would find them; nothing is stored. Raises Interrupted on Ctrl-C."""
    client = RegistryClient(clients, policy or RetryPolicy(attempts=3))
    lookup = SignatureLookup(client)
    result = PlanSignatures()

    def one(artifact: ImageArtifact) -> ImageSignatures:
        arches = [a for a in plan.arches if not artifact.arches or a in artifact.arches] or list(plan.arches)
        endpoint = clients.mirrors.registry(artifact.registry)
        repository = docker_repository(artifact.registry, artifact.repository)
        reference = artifact.digest or artifact.tag
        if reference is None:
            raise FetchError("image reference has neither tag nor digest")
        top = client.manifest(endpoint, repository, reference)
        return signed_subjects(lookup, endpoint, repository, image_subjects(top, arches))

    images = {i.upstream: i for i in plan.images}
    with WorkerPool(max(1, jobs), "kubeplay-signatures", clients.stop) as pool:
        futures = {pool.submit(one, artifact): artifact for artifact in images.values()}
        for future in as_completed(futures):
            artifact = futures[future]
            try:
                result.images[artifact.upstream] = future.result()
            except Interrupted:
                raise
            except (FetchError, ValueError, KeyError) as exc:
                result.problems.append((redact(artifact.upstream), artifact.variable, redact(str(exc))))
    result.problems.sort()
    return result
