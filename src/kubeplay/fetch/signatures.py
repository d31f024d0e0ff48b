"""Which signature artifacts upstream published for a digest: cosign's `.sig`/`.att`/`.sbom` tags and OCI 1.1
referrers (by the referrers API, else the tag-schema index `sha256-<hex>`).

Used by the build (assemble/signatures.py stores what is found) and by `kubeplay plan --signatures` (only
says what exists). Reads only; a missing artifact is normal and not an error.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from kubeplay.errors import FetchError, NotUpstream
from kubeplay.fetch.mirrors import RegistryEndpoint
from kubeplay.fetch.oci import Fetched, RegistryClient

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
