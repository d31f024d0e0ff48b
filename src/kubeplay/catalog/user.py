"""The user's own artifacts (bundle.yaml `images:` and `files:`) as plan entries beside kubespray's.

They become the same FileArtifact/ImageArtifact kubespray's downloads do, so they take the same fetch,
store, mirror, credential and prune path; `origin="user"` marks them and `variable` holds their
bundle.yaml location (`bundle.yaml images[2]`), which every failure and plan line names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from kubeplay.catalog.locations import file_destination, parse_image_name
from kubeplay.catalog.model import Checksum, FileArtifact, ImageArtifact, Plan
from kubeplay.config.bundle import BundleSpec

USER_LABEL = "bundle.yaml "  # every user artifact's variable starts so; no kubespray variable does


def is_users(label: str) -> bool:
    """True for the variable/label of an artifact bundle.yaml asked for (images:, files:, charts:)."""
    return label.startswith(USER_LABEL)


def user_images(spec: BundleSpec, arches: Sequence[str]) -> list[ImageArtifact]:
    """bundle.yaml `images:` as plan images, each cut to its own arches (default: the plan's)."""
    out = []
    for index, image in enumerate(spec.images):
        name = parse_image_name(image.repo)
        wanted = tuple(a for a in arches if image.arches is None or a in image.arches)
        if not wanted:
            continue  # `kubeplay plan --arch` narrowed the plan to arches this image is not wanted for
        out.append(
            ImageArtifact(
                name=name.repository.rsplit("/", 1)[-1],
                upstream=image.ref,
                registry=name.registry,
                repository=name.repository,
                tag=image.tag,
                digest=image.digest,
                bundle_repository=name.bundle_repository(spec.registry_project),
                arches=wanted,
                variable=f"bundle.yaml images[{index}]",
                origin="user",
                platform_policy=image.platform_policy,
            )
        )
    return out


def user_files(spec: BundleSpec) -> list[FileArtifact]:
    """bundle.yaml `files:` as plan files (noarch), each checked against its required sha256."""
    return [
        FileArtifact(
            name=PurePosixPath(urlsplit(f.url).path).name or urlsplit(f.url).netloc,
            arch="noarch",
            url=f.url,
            checksum=Checksum(algorithm="sha256", hex=f.sha256),
            path=file_destination(f.url),
            variable=f"bundle.yaml files[{index}]",
            origin="user",
        )
        for index, f in enumerate(spec.files)
    ]


def with_user_artifacts(plan: Plan, spec: BundleSpec) -> Plan:
    """`plan` with the user's files and images appended after kubespray's."""
    return plan.model_copy(
        update={
            "files": plan.files + tuple(user_files(spec)),
            "images": plan.images + tuple(user_images(spec, plan.arches)),
        }
    )
