"""The plan: every file and image kubespray would download, with digests and where it lands in the bundle."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Who asked for an artifact: kubespray's download tables, the user's bundle.yaml (images:, files:), or a
# chart bundle.yaml lists (an image found in it, or in its charts[N].images).
Origin = Literal["kubespray", "user", "chart"]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Checksum(Frozen):
    algorithm: Literal["sha256", "sha512"]
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class FileArtifact(Frozen):
    """One file kubespray downloads with get_url, for one arch (or `noarch`)."""

    name: str = Field(description="key in kubespray's `downloads:` (e.g. kubeadm)")
    arch: str = Field(description="amd64, arm64 or noarch")
    version: str | None = None
    url: str = Field(description="upstream URL as kubespray renders it")
    checksum: Checksum | None = None
    path: str = Field(description="bundle-relative destination: files/<host>/<path>")
    groups: tuple[str, ...] = ()
    variable: str = Field(
        description="the kubespray variable the URL came from (e.g. kubeadm_download_url), or for the user's own "
        "files their bundle.yaml location ('bundle.yaml files[0]')"
    )
    origin: Origin = "kubespray"


class ImageArtifact(Frozen):
    """One container image (all requested arches of it)."""

    name: str = Field(description="key in kubespray's `downloads:`, or kubeadm's image name")
    upstream: str = Field(description="full upstream reference, e.g. registry.k8s.io/pause:3.10.1")
    registry: str = Field(description="upstream registry host, e.g. registry.k8s.io")
    repository: str = Field(description="repository path on that registry, e.g. pause")
    tag: str | None = None
    digest: str | None = Field(default=None, description="pinned manifest digest, when kubespray pins one")
    bundle_repository: str = Field(description="repository in the bundle registry: <project>/<host>/<path>")
    arches: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    variable: str = Field(
        description="the kubespray *_image_repo variable the reference came from, or for the user's own images "
        "their bundle.yaml location ('bundle.yaml images[0]')"
    )
    origin: Origin = "kubespray"
    platform_policy: Literal["strict", "warn"] | None = Field(
        default=None, description="this image's own platform policy (bundle.yaml images[].platform_policy)"
    )

    @property
    def reference(self) -> str:
        return f"@{self.digest}" if self.digest and not self.tag else f":{self.tag}"


class RenderProblem(Frozen):
    """A template that could not be rendered; the rest of the plan still renders."""

    entry: str
    variable: str
    message: str


class Plan(Frozen):
    kubespray_version: str
    kube_version: str
    arches: tuple[str, ...]
    files: tuple[FileArtifact, ...] = ()
    images: tuple[ImageArtifact, ...] = ()
    offline_vars: dict[str, str] = Field(
        default_factory=dict, description="kubespray variables that redirect every download to the deploy node"
    )
    problems: tuple[RenderProblem, ...] = ()
