"""Where upstream things live and where they land in the bundle: image references and file URLs.

Images keep their upstream host as a path component inside one registry project, so names from different
registries never collide and kubespray needs no fork: `<project>/<host>/<path>` (e.g.
library/registry.k8s.io/kube-apiserver) is reached by setting `kube_image_repo` to
`<registry_host>/<project>/registry.k8s.io`. Files land at `files/<host>/<path>` (kubespray's files_repo tip).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

DOCKER_HUB = "docker.io"
DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
TAG_RE = re.compile(r"^\w[\w.-]{0,127}$")


class LocationError(ValueError):
    """An image reference or a URL kubeplay cannot place in the bundle."""


@dataclass(frozen=True)
class ImageName:
    registry: str
    repository: str

    def bundle_repository(self, project: str) -> str:
        return f"{project}/{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}"


def is_registry_host(component: str) -> bool:
    """Docker's rule: the first path component is a registry when it has a dot, a port, or is localhost."""
    return "." in component or ":" in component or component == "localhost"


def parse_image_name(repo: str) -> ImageName:
    """Split `registry/path` (docker.io and library/ implied as Docker does); raise LocationError when invalid."""
    text = repo.strip()
    if not text or "@" in text or any(c.isspace() for c in text):
        raise LocationError(f"invalid image repository {repo!r}")
    first, _, rest = text.partition("/")
    if rest and is_registry_host(first):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, text
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    for component in path.split("/"):
        if not PATH_COMPONENT_RE.match(component):
            raise LocationError(f"invalid image repository {repo!r}: bad path component {component!r}")
    return ImageName(registry=registry, repository=path)


def check_tag(tag: str) -> str:
    if not TAG_RE.match(tag):
        raise LocationError(f"invalid image tag {tag!r}")
    return tag


def normalize_digest(value: str) -> str:
    """`abc…` or `sha256:abc…` -> `sha256:abc…`; raise LocationError for anything else."""
    text = value.strip()
    if ":" not in text:
        text = f"sha256:{text}"
    if not DIGEST_RE.match(text):
        raise LocationError(f"invalid image digest {value!r}")
    return text.lower()


def check_reference(repo: str, tag: str | None, digest: str | None) -> str | None:
    """Check the parts of `repo[:tag][@digest]`; return the digest normalized (None when there is none).
    Raise LocationError for the first part that is invalid."""
    parse_image_name(repo)
    if tag is not None:
        check_tag(tag)
    return normalize_digest(digest) if digest else None


def file_destination(url: str) -> str:
    """`https://host/a/b` -> `files/host/a/b`; raise LocationError for URLs that cannot be laid out safely."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LocationError(f"not an http(s) URL: {url!r}")
    segments = [s for s in parts.path.split("/") if s]
    if not segments or any(s in (".", "..") for s in segments):
        raise LocationError(f"URL path cannot be laid out under files/: {url!r}")
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return "/".join(["files", host, *segments])
