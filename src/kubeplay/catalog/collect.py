"""Merge rendered entries from every arch and configuration into plan artifacts, without duplicates."""

from __future__ import annotations

from collections.abc import Iterable

from kubeplay.catalog.entries import RenderedEntries, RenderedImage
from kubeplay.catalog.locations import LocationError, file_destination, parse_image_name
from kubeplay.catalog.model import FileArtifact, ImageArtifact, RenderProblem

NOARCH = "noarch"


def merge_groups(a: Iterable[str], b: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*a, *b]))


class PlanBuilder:
    """Accumulates files (one per arch and URL; `noarch` when the URL does not depend on the arch)
    and images (one per reference, with the arches that need it)."""

    def __init__(self, project: str, noarch_entries: set[str]) -> None:
        self.project = project
        self.noarch_entries = noarch_entries
        self.files: dict[tuple[str, str], FileArtifact] = {}
        self.images: dict[str, tuple[RenderedImage, list[str], tuple[str, ...]]] = {}
        self.problems: list[RenderProblem] = []
        self._problem_keys: set[tuple[str, str, str]] = set()

    def problem(self, problem: RenderProblem) -> None:
        key = (problem.entry, problem.variable, problem.message)
        if key not in self._problem_keys:
            self._problem_keys.add(key)
            self.problems.append(problem)

    def add(self, rendered: RenderedEntries, arch: str) -> None:
        for problem in rendered.problems:
            self.problem(problem)
        for item in rendered.files:
            file_arch = NOARCH if item.name in self.noarch_entries else arch
            try:
                path = file_destination(item.url)
            except LocationError as exc:
                self.problem(RenderProblem(entry=item.name, variable=item.variable, message=f"[{arch}] url: {exc}"))
                continue
            key = (file_arch, item.url)
            existing = self.files.get(key)
            if existing is not None:
                if existing.checksum != item.checksum:
                    message = f"[{arch}] {item.url}: checksums differ ({existing.checksum} vs {item.checksum})"
                    self.problem(RenderProblem(entry=item.name, variable=item.variable, message=message))
                groups = merge_groups(existing.groups, item.groups)
                self.files[key] = existing.model_copy(update={"groups": groups})
                continue
            self.files[key] = FileArtifact(
                name=item.name,
                arch=file_arch,
                version=item.version,
                url=item.url,
                checksum=item.checksum,
                path=path,
                groups=item.groups,
                variable=item.variable,
            )
        for image in rendered.images:
            reference = upstream_reference(image)
            known = self.images.get(reference)
            if known is None:
                self.images[reference] = (image, [arch], image.groups)
            else:
                first, arches, groups = known
                if arch not in arches:
                    arches.append(arch)
                self.images[reference] = (first, arches, merge_groups(groups, image.groups))

    def image_artifacts(self) -> list[ImageArtifact]:
        out = []
        for reference, (image, arches, groups) in self.images.items():
            name = parse_image_name(image.repo)
            out.append(
                ImageArtifact(
                    name=image.name,
                    upstream=reference,
                    registry=name.registry,
                    repository=name.repository,
                    tag=image.tag,
                    digest=image.digest,
                    bundle_repository=name.bundle_repository(self.project),
                    arches=tuple(arches),
                    groups=groups,
                    variable=image.variable,
                )
            )
        return out


def upstream_reference(image: RenderedImage) -> str:
    """What kubespray pulls: `repo@sha256:…` when it pins a digest, else `repo:tag`."""
    return f"{image.repo}@{image.digest}" if image.digest else f"{image.repo}:{image.tag}"
