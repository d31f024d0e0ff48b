"""bundle.yaml: what one offline bundle holds. Build side only; read by catalog, fetch, osrepo, bundle."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from kubeplay.catalog.locations import LocationError, check_reference, file_destination
from kubeplay.config.loader import load_model

SUPPORTED_ARCHES: tuple[str, ...] = ("amd64", "arm64")


def check_arches(v: list[str]) -> list[str]:
    for arch in v:
        if arch not in SUPPORTED_ARCHES:
            raise ValueError(f"unknown arch {arch!r}; supported: {', '.join(SUPPORTED_ARCHES)}")
    if not v:
        raise ValueError("at least one arch is needed")
    return list(dict.fromkeys(v))


def number_as_text(v: Any) -> Any:
    """YAML reads `release: 12` or `version: 1.2` as a number; these fields are text."""
    return str(v) if isinstance(v, int | float) else v


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_sha256(v: str) -> str:
    v = v.lower().removeprefix("sha256:")
    if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise ValueError("expected 64 hex digits")
    return v


class KubesprayRef(Strict):
    """The kubespray release: a source archive URL or a local path (directory or .tar.gz) and its sha256."""

    version: str = Field(description="release tag, e.g. v2.31.0")
    source: str = Field(description="URL of a release .tar.gz, or a local directory or .tar.gz")
    sha256: str | None = Field(default=None, description="sha256 of the archive; required for archives")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        return None if v is None else check_sha256(v)


class RegistryBinary(Strict):
    """The CNCF distribution registry as a release archive, for deploy nodes whose OS repos lack a package
    for it (EL: no docker-distribution in BaseOS/AppStream/EPEL 8+). Installed only where no package is."""

    url: str = Field(
        description="release .tar.gz; {arch} becomes amd64/arm64, e.g. "
        "https://github.com/distribution/distribution/releases/download/v3.0.0/registry_3.0.0_linux_{arch}.tar.gz"
    )
    sha256: dict[str, str] = Field(description="sha256 of the archive for each bundle arch")
    member: str = Field(default="registry", description="the binary's name inside the archive")

    @field_validator("sha256")
    @classmethod
    def _per_arch(cls, v: dict[str, str]) -> dict[str, str]:
        check_arches(list(v))
        return {arch: check_sha256(digest) for arch, digest in v.items()}

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError(f"expected an http(s) URL, got {v!r}")
        return v

    def url_for(self, arch: str) -> str:
        return self.url.replace("{arch}", arch)


class Mirror(Strict):
    """Where to fetch what kubespray would fetch from one upstream host."""

    url: str = Field(description="base URL replacing https://<host> (a file mirror or a registry)")
    ca: Path | None = Field(default=None, description="CA bundle (PEM) to trust for this mirror")
    insecure: bool = Field(default=False, description="skip TLS verification; only when written explicitly")
    credentials: str | None = Field(
        default=None, description="name of an entry in the credentials file or KUBEPLAY_CRED_<NAME>_* env vars"
    )


class OsSource(Strict):
    """One upstream package repository of an OS target; replaces the sources derived from `mirror`."""

    url: str = Field(description="apt: archive root (has dists/); rpm: baseurl, may hold $basearch and $releasever")
    suites: list[str] = Field(default_factory=list, description="apt suites; default: <codename>, <codename>-updates")
    components: list[str] = Field(default_factory=list, description="apt components; default: the distro's")
    name: str | None = Field(default=None, description="rpm repo id (e.g. BaseOS); default: derived from url")
    arches: list[str] = Field(default_factory=list, description="target arches served by this source; default all")
    keyring: Path | None = Field(default=None, description="keyring verifying this source's index signature")


class OsTarget(Strict):
    distro: str
    release: str
    arches: list[str] = Field(default_factory=lambda: ["amd64"])
    mirror: str | None = None
    baseline: Path | None = None
    sources: list[OsSource] = Field(default_factory=list, description="explicit upstream repos (override mirror)")
    keyring: Path | None = Field(default=None, description="keyring for index signatures; default: distro's")
    recommends: bool = Field(default=False, description="also bundle Recommends (apt's default install)")
    modules: list[str] = Field(default_factory=list, description="rpm module streams to enable, name:stream")

    _arches = field_validator("arches")(check_arches)

    _release_str = field_validator("release", mode="before")(number_as_text)


class DeployNode(Strict):
    """The machine install.sh runs on: the build carries wheels for its Python and that Python in its OS repo."""

    distro: str = Field(description="one of the os: targets' distros, e.g. debian")
    release: str = Field(description="that target's release, e.g. 12")
    arch: str | None = Field(default=None, description="amd64 or arm64; default: the target's first arch")

    _release_str = field_validator("release", mode="before")(number_as_text)

    @field_validator("arch")
    @classmethod
    def _arch(cls, v: str | None) -> str | None:
        return None if v is None else check_arches([v])[0]


class Packages(Strict):
    """The original kubeplay's packages.yaml shape: common, apt, yum, and per-distro lists."""

    common: list[str] = Field(default_factory=list)
    apt: list[str] = Field(default_factory=list)
    yum: list[str] = Field(default_factory=list)
    per_distro: dict[str, list[str]] = Field(default_factory=dict, alias="distro")
    defaults: bool = Field(default=True, description="include kubeplay's default list for each OS family")


class ExtraImage(Strict):
    """An image the cluster's own workloads need, bundled beside kubespray's (`images:`)."""

    ref: str = Field(description="image reference by tag or digest, e.g. quay.io/org/app:1.2 or ...@sha256:<hex>")
    arches: list[str] | None = Field(default=None, description="arches to bundle; default: the bundle's arches")
    platform_policy: Literal["strict", "warn"] | None = Field(
        default=None, description="for this image only; default: the bundle's platform_policy"
    )

    @field_validator("arches")
    @classmethod
    def _arches(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else check_arches(v)

    @field_validator("ref")
    @classmethod
    def _reference(cls, v: str) -> str:
        split_reference(v)
        return v.strip()

    @property
    def repo(self) -> str:
        return split_reference(self.ref)[0]

    @property
    def tag(self) -> str | None:
        return split_reference(self.ref)[1]

    @property
    def digest(self) -> str | None:
        return split_reference(self.ref)[2]


def split_reference(ref: str) -> tuple[str, str | None, str | None]:
    """`repo[:tag][@digest]` -> (repo, tag, digest); raise ValueError when it names no tag and no digest."""
    text = ref.strip()
    name, _, digest = text.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = name[colon + 1 :] if colon > slash else None
    repo = name[:colon] if tag is not None else name
    try:
        digest_value = check_reference(repo, tag, digest)
    except LocationError as exc:
        raise ValueError(str(exc)) from None
    if tag is None and digest_value is None:
        raise ValueError(f"{ref!r} has neither a tag nor a digest (write repo:tag or repo@sha256:<hex>)")
    return repo, tag, digest_value


class ExtraFile(Strict):
    """A file the cluster's workloads need, served at files/<host>/<path> like kubespray's (`files:`)."""

    url: str = Field(description="http(s) URL of the file")
    sha256: str = Field(description="its sha256 (required: the download is checked against it)")

    _hex = field_validator("sha256")(check_sha256)

    @field_validator("url")
    @classmethod
    def _placeable(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError(f"expected an http(s) URL, got {v!r}")
        try:
            file_destination(v)
        except LocationError as exc:
            raise ValueError(str(exc)) from None
        return v


class ChartRef(Strict):
    """A Helm chart the workloads need (`charts:`): served by the deploy node as an OCI artifact in the bundle
    registry (<registry_project>/charts/<name>) and from a chart repository (files/charts/index.yaml)."""

    name: str = Field(description="the chart's name in its repository")
    repo: str = Field(description="a classic chart repository (https://…, has index.yaml) or oci://registry/path")
    version: str = Field(description="the exact chart version")
    images: list[str] = Field(default_factory=list, description="images the chart needs that discovery misses")
    exclude_images: list[str] = Field(
        default_factory=list, description="discovered images not to bundle (a reference, or a repository for all tags)"
    )

    _version_str = field_validator("version", mode="before")(number_as_text)

    @field_validator("name")
    @classmethod
    def _chart_name(cls, v: str) -> str:
        if not CHART_NAME_RE.match(v):
            raise ValueError(f"invalid chart name {v!r} (lowercase letters, digits, '-', '_' and '.')")
        return v

    @field_validator("repo")
    @classmethod
    def _repo_url(cls, v: str) -> str:
        if not v.startswith(("https://", "http://", "oci://")):
            raise ValueError(f"expected an https://, http:// or oci:// repository, got {v!r}")
        return v.rstrip("/")

    @field_validator("images")
    @classmethod
    def _refs(cls, v: list[str]) -> list[str]:
        for ref in v:
            split_reference(ref)
        return v

    @property
    def is_oci(self) -> bool:
        return self.repo.startswith("oci://")


CHART_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")


class BundleSpec(Strict):
    """The whole of bundle.yaml."""

    kubespray: KubesprayRef
    kube_version: str | None = None
    arches: list[str] = Field(default_factory=lambda: ["amd64"])
    kube_network_plugin: list[str] = Field(default_factory=lambda: ["calico"])
    container_manager: list[str] = Field(default_factory=lambda: ["containerd"])
    platform_policy: Literal["strict", "warn"] = "strict"
    registry_project: str = "library"
    os: list[OsTarget] = Field(default_factory=list)
    deploy_node: DeployNode | None = Field(
        default=None, description="the deploy node's OS (default: any os: target that has a Python kubespray runs on)"
    )
    packages: Packages = Field(default_factory=Packages)
    mirrors: dict[str, Mirror] = Field(default_factory=dict)
    credentials_file: Path | None = None
    kubespray_vars: dict[str, Any] = Field(default_factory=dict)
    registry_binary: RegistryBinary | None = None
    images: list[ExtraImage] = Field(default_factory=list, description="the workloads' own images")
    files: list[ExtraFile] = Field(default_factory=list, description="the workloads' own files")
    charts: list[ChartRef] = Field(default_factory=list, description="the workloads' Helm charts")

    # Set by load_bundle_spec: relative paths in the file are relative to the file's directory.
    base_dir: Path = Field(default=Path("."), exclude=True)

    _arches = field_validator("arches")(check_arches)

    @field_validator("kube_network_plugin", "container_manager", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("kube_version", mode="before")
    @classmethod
    def _version_str(cls, v: Any) -> Any:
        if isinstance(v, int | float):
            v = str(v)
        return v.removeprefix("v") if isinstance(v, str) else v

    @field_validator("mirrors", mode="before")
    @classmethod
    def _mirror_shorthand(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {host: ({"url": m} if isinstance(m, str) else m) for host, m in v.items()}
        return v

    @field_validator("images", mode="before")
    @classmethod
    def _image_shorthand(cls, v: Any) -> Any:
        return [{"ref": item} if isinstance(item, str) else item for item in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _image_arches_in_bundle(self) -> BundleSpec:
        errors = [
            InitErrorDetails(
                type=PydanticCustomError(
                    "value_error",
                    "{arches} not among the bundle's arches ({bundle})",
                    {"arches": ", ".join(extra), "bundle": ", ".join(self.arches)},
                ),
                loc=("images", index, "arches"),
                input=image.arches,
            )
            for index, image in enumerate(self.images)
            if (extra := [a for a in image.arches or [] if a not in self.arches])
        ]
        if errors:
            raise ValidationError.from_exception_data("BundleSpec", errors)
        return self

    @model_validator(mode="after")
    def _registry_binary_arches(self) -> BundleSpec:
        if self.registry_binary is not None:
            missing = [a for a in self.arches if a not in self.registry_binary.sha256]
            if missing:
                raise ValueError(
                    f"registry_binary.sha256 has no digest for {', '.join(missing)} (the bundle's arches: "
                    f"{', '.join(self.arches)})"
                )
        return self

    def resolve(self, p: Path | str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else (self.base_dir / path)


def load_bundle_spec(path: Path) -> BundleSpec:
    """Read and validate bundle.yaml; raise ConfigError naming the file and field path on any problem."""
    spec = load_model(path, BundleSpec)
    spec.base_dir = path.resolve().parent
    return spec
