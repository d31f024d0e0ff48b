"""A Helm chart as an OCI artifact, as `helm push` writes it: a JSON config of Chart.yaml's metadata and
one layer, the chart package itself (so its sha256 is the same digest a chart repository's index.yaml lists).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

CONFIG_MEDIA_TYPE = "application/vnd.cncf.helm.config.v1+json"
CHART_MEDIA_TYPE = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class ChartArtifact:
    """The three blobs of a chart artifact; `manifest` is what its tag points at."""

    config: bytes
    chart: bytes
    manifest: bytes

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_tag(version: str) -> str:
    """Helm stores a chart version as its tag with `+` (invalid in tags) written `_`."""
    return version.replace("+", "_")


def chart_artifact(chart: bytes, metadata: dict[str, Any]) -> ChartArtifact:
    """The OCI artifact of a chart package whose Chart.yaml is `metadata`."""
    config = json.dumps(metadata, sort_keys=True, separators=(",", ":"), default=str).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": CHART_MEDIA_TYPE, "digest": sha256_digest(chart), "size": len(chart)}],
    }
    return ChartArtifact(config, chart, json.dumps(manifest, separators=(",", ":")).encode())


def chart_layer(manifest: bytes) -> tuple[str, str]:
    """(config digest, chart layer digest) of a chart artifact manifest; ValueError when it is not one."""
    doc = json.loads(manifest)
    layers = [layer for layer in doc.get("layers") or [] if layer.get("mediaType") == CHART_MEDIA_TYPE]
    config = doc.get("config") or {}
    if len(layers) != 1 or config.get("mediaType") != CONFIG_MEDIA_TYPE:
        raise ValueError("not a Helm chart artifact (no helm config or chart layer)")
    return str(config["digest"]), str(layers[0]["digest"])
