"""Signature artifacts in the OCI shape cosign writes, for the simulator to publish beside its images.

Content is synthetic (no real Sigstore signature), the shape is cosign's: for a subject digest
`sha256:<hex>`, tag `sha256-<hex>.sig` (a simplesigning payload layer with the signature annotation),
`.att` (a DSSE envelope layer with its predicateType) and `.sbom` (an SPDX document layer), each an OCI
manifest with an image config; and an OCI 1.1 referrer (a Sigstore bundle, `subject` = the image,
`artifactType`), listed in the referrers tag-schema index `sha256-<hex>` that clients fall back to on a
registry without the referrers API (the distribution 2.8 registry the simulator runs).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from kubeplay.lab.upstream.images import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Blob

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
SPDX_JSON = "text/spdx+json"
SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
TAG_SUFFIXES = (".sig", ".att", ".sbom")


@dataclass(frozen=True)
class Artifact:
    """One manifest to push (under `tag`, or by digest when None) and the blobs it references."""

    tag: str | None
    manifest: Blob
    blobs: tuple[Blob, ...]


def _manifest(config: Blob, layer: Blob, annotations: dict[str, str], extra: dict[str, object] | None = None) -> Blob:
    body: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [{**layer.descriptor(), "annotations": annotations}],
        **(extra or {}),
    }
    return Blob(OCI_MANIFEST, json.dumps(body, separators=(",", ":")).encode())


def cosign_artifacts(repository: str, subject: dict[str, object]) -> list[Artifact]:
    """The `.sig`, `.att`, `.sbom` tags and one referrer (with its tag-schema index) for the image whose
    descriptor (mediaType, digest, size) is `subject`."""
    digest = str(subject["digest"])
    hexd = digest.removeprefix("sha256:")
    config = Blob(OCI_CONFIG, json.dumps({"architecture": "", "os": "", "rootfs": {"type": "layers"}}).encode())
    payload = json.dumps(
        {"critical": {"identity": {"docker-reference": repository}, "image": {"docker-manifest-digest": digest},
                      "type": "cosign container image signature"}, "optional": None}
    ).encode()  # fmt: skip
    signature = base64.b64encode(b"synthetic signature of " + digest.encode()).decode()
    sig_layer = Blob(SIMPLESIGNING, payload)
    statement = {"payloadType": "application/vnd.in-toto+json", "payload": base64.b64encode(payload).decode()}
    att_layer = Blob(DSSE, json.dumps(statement).encode())
    sbom_layer = Blob(SPDX_JSON, json.dumps({"spdxVersion": "SPDX-2.3", "name": repository}).encode())
    artifacts = [
        Artifact(
            f"sha256-{hexd}.sig",
            _manifest(config, sig_layer, {"dev.cosignproject.cosign/signature": signature}),
            (config, sig_layer),
        ),
        Artifact(
            f"sha256-{hexd}.att",
            _manifest(config, att_layer, {"predicateType": "https://slsa.dev/provenance/v1"}),
            (config, att_layer),
        ),
        Artifact(f"sha256-{hexd}.sbom", _manifest(config, sbom_layer, {}), (config, sbom_layer)),
    ]
    empty = Blob(EMPTY_CONFIG, b"{}")
    bundle_layer = Blob(SIGSTORE_BUNDLE, json.dumps({"mediaType": SIGSTORE_BUNDLE, "subject": digest}).encode())
    referrer = _manifest(
        empty,
        bundle_layer,
        {"dev.sigstore.bundle.content": "message-signature"},
        {"artifactType": SIGSTORE_BUNDLE, "subject": subject},
    )
    artifacts.append(Artifact(None, referrer, (empty, bundle_layer)))
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{**referrer.descriptor(), "artifactType": SIGSTORE_BUNDLE}],
    }
    artifacts.append(Artifact(f"sha256-{hexd}", Blob(OCI_INDEX, json.dumps(index).encode()), ()))
    return artifacts
