"""Helm chart packages as data: Chart.yaml, values.yaml of the chart and its subcharts, and the images they use.

Images are found where charts conventionally declare them (no template is rendered):
- values.yaml blocks under a key `image` (or `…Image`/`…_image`): a reference string, or a mapping
  `{registry, repository | image, tag, digest}`; `global.imageRegistry` of the top chart overrides the
  block's registry (Bitnami's convention); with no tag and no digest, the chart's appVersion is the tag
  when the chart's templates read `.Chart.AppVersion`;
- the `helm.sh/images` annotation in Chart.yaml (HIP-0015; Artifact Hub's `artifacthub.io/images` too):
  a YAML list of `{name, image}`.
What looks like an image but cannot be turned into a reference (a template, no tag) is listed as
unresolved, with where it was, so the user can add it to the chart's `images:`.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from kubeplay.catalog.locations import LocationError, check_reference, parse_image_name
from kubeplay.config.bundle import split_reference

IMAGE_ANNOTATIONS = ("helm.sh/images", "artifacthub.io/images")
MAX_CHART_BYTES = 64 * 1024 * 1024  # unpacked; a chart is text, a few MiB at most


class ChartError(ValueError):
    """A chart package that cannot be read (not a gzip tar, no Chart.yaml, bad YAML)."""


@dataclass(frozen=True)
class Dependency:
    name: str
    version: str
    repository: str
    alias: str | None = None


@dataclass
class ChartPackage:
    """One chart (or a subchart vendored in its charts/ directory), as read from its package."""

    name: str
    version: str
    app_version: str | None
    metadata: dict[str, Any]  # Chart.yaml as written
    values: dict[str, Any]
    reads_app_version: bool  # some template reads .Chart.AppVersion
    dependencies: list[Dependency] = field(default_factory=list)
    subcharts: list[ChartPackage] = field(default_factory=list)  # vendored under charts/

    @property
    def vendored(self) -> set[str]:
        return {c.name for c in self.subcharts}

    def missing_dependencies(self) -> list[Dependency]:
        """Dependencies Chart.yaml lists that the package does not carry under charts/."""
        return [d for d in self.dependencies if d.name not in self.vendored]


@dataclass(frozen=True)
class FoundImage:
    ref: str
    where: str  # e.g. "values.yaml controller.image" or "charts/redis values.yaml image"


@dataclass(frozen=True)
class Unresolved:
    where: str
    why: str


def read_chart(data: bytes) -> ChartPackage:
    """Read a chart package (.tgz); raise ChartError when it is not one."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members: dict[str, bytes] = {}
            total = 0
            for member in tar:
                if not member.isfile():
                    continue
                total += member.size
                if total > MAX_CHART_BYTES:
                    raise ChartError(f"unpacks to more than {MAX_CHART_BYTES} bytes")
                handle = tar.extractfile(member)
                if handle is not None:
                    members[member.name.lstrip("./")] = handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ChartError(f"not a chart package (gzip tar): {exc}") from None
    tops = {name.split("/", 1)[0] for name in members if "/" in name}
    for top in sorted(tops):
        if f"{top}/Chart.yaml" in members:
            return _chart_in(members, top)
    raise ChartError("no <name>/Chart.yaml in the package")


def _load_yaml(text: bytes, what: str) -> Any:
    try:
        return yaml.safe_load(text.decode("utf-8", errors="replace"))
    except yaml.YAMLError as exc:
        raise ChartError(f"{what}: YAML error: {exc}") from None


def _chart_in(members: Mapping[str, bytes], root: str) -> ChartPackage:
    meta = _load_yaml(members[f"{root}/Chart.yaml"], f"{root}/Chart.yaml")
    if not isinstance(meta, dict) or not meta.get("name") or meta.get("version") is None:
        raise ChartError(f"{root}/Chart.yaml has no name or version")
    values_raw = members.get(f"{root}/values.yaml")
    values = _load_yaml(values_raw, f"{root}/values.yaml") if values_raw else {}
    templates = [body for name, body in members.items() if name.startswith(f"{root}/templates/")]
    deps = [
        Dependency(str(d.get("name")), str(d.get("version", "")), str(d.get("repository") or ""), d.get("alias"))
        for d in meta.get("dependencies") or []
        if isinstance(d, dict) and d.get("name")
    ]
    chart = ChartPackage(
        name=str(meta["name"]),
        version=str(meta["version"]),
        app_version=None if meta.get("appVersion") is None else str(meta["appVersion"]),
        metadata=meta,
        values=values if isinstance(values, dict) else {},
        reads_app_version=any(b".Chart.AppVersion" in body for body in templates),
        dependencies=deps,
    )
    prefix = f"{root}/charts/"
    subdirs = {name[len(prefix) :].split("/", 1)[0] for name in members if name.startswith(prefix)}
    for sub in sorted(subdirs):
        path = f"{prefix}{sub}"
        if sub.endswith(".tgz") and path in members:
            chart.subcharts.append(read_chart(members[path]))
        elif f"{path}/Chart.yaml" in members:
            chart.subcharts.append(_chart_in(members, path))
    return chart


def discover_images(
    chart: ChartPackage, global_registry: str | None = None
) -> tuple[list[FoundImage], list[Unresolved]]:
    """Images the chart and its vendored subcharts use, each once (first place found), and what did not
    resolve; `global_registry` is the top chart's global.imageRegistry (passed down to subcharts)."""
    top_global = chart.values.get("global")
    if global_registry is None and isinstance(top_global, dict) and isinstance(top_global.get("imageRegistry"), str):
        global_registry = top_global["imageRegistry"] or None
    found: dict[str, FoundImage] = {}
    unresolved: list[Unresolved] = []
    for annotated, where in _annotation_images(chart):
        found.setdefault(annotated, FoundImage(annotated, where))
    for path, block in _image_blocks(chart.values, ()):
        where = f"values.yaml {'.'.join(path)}"
        ref, why = _reference(block, chart, global_registry)
        if ref is not None:
            found.setdefault(ref, FoundImage(ref, where))
        elif why:
            unresolved.append(Unresolved(where, why))
    for sub in chart.subcharts:
        sub_found, sub_unresolved = discover_images(sub, global_registry)
        for image in sub_found:
            found.setdefault(image.ref, FoundImage(image.ref, f"charts/{sub.name} {image.where}"))
        unresolved += [Unresolved(f"charts/{sub.name} {u.where}", u.why) for u in sub_unresolved]
    return list(found.values()), unresolved


def _annotation_images(chart: ChartPackage) -> Iterator[tuple[str, str]]:
    annotations = chart.metadata.get("annotations")
    if not isinstance(annotations, dict):
        return
    for key in IMAGE_ANNOTATIONS:
        text = annotations.get(key)
        if not isinstance(text, str):
            continue
        try:
            entries = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        for entry in entries if isinstance(entries, list) else []:
            image = entry.get("image") if isinstance(entry, dict) else entry
            if isinstance(image, str) and _valid(image):
                yield image.strip(), f"Chart.yaml {key}"


def _is_image_key(key: str) -> bool:
    return key == "image" or key.endswith(("Image", "_image"))


def _image_blocks(node: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            here = (*path, str(key))
            if _is_image_key(str(key)) and isinstance(value, str | dict):
                yield here, value
                if isinstance(value, dict):  # an image block may nest others (image.sidecar.image), not its fields
                    yield from _image_blocks({k: v for k, v in value.items() if isinstance(v, dict | list)}, here)
            else:
                yield from _image_blocks(value, here)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _image_blocks(item, (*path[:-1], f"{path[-1]}[{index}]") if path else (f"[{index}]",))


def _valid(ref: str) -> bool:
    try:
        split_reference(ref)
    except ValueError:
        return False
    return True


def _reference(block: Any, chart: ChartPackage, global_registry: str | None) -> tuple[str | None, str]:
    """(reference, "") for a usable block; (None, why) for one that looks like an image but is not usable;
    (None, "") for one that is not an image at all (e.g. `image: {pullPolicy: …}` alone, or disabled)."""
    if isinstance(block, str):
        text = block.strip()
        if not text:
            return None, ""
        if "{{" in text:
            return None, f"{text!r} is a template"
        return (text, "") if _valid(text) else (None, f"{text!r} is not a reference with a tag or digest")
    repository = block.get("repository") or block.get("image") or block.get("name")
    if not isinstance(repository, str) or not repository.strip():
        return None, ""
    repository = repository.strip()
    if "{{" in repository:
        return None, f"repository {repository!r} is a template"
    registry = global_registry or block.get("registry")
    if isinstance(registry, str) and registry.strip() and not repository.startswith(registry.strip().rstrip("/") + "/"):
        repository = f"{registry.strip().rstrip('/')}/{repository}"
    tag = block.get("tag")
    tag = str(tag).strip() if isinstance(tag, str | int | float) and str(tag).strip() else None
    digest = block.get("digest") or block.get("sha")
    digest = str(digest).strip() if isinstance(digest, str) and digest.strip() else None
    if tag is None and digest is None:
        if chart.app_version and chart.reads_app_version:
            tag = chart.app_version
        else:
            return None, f"{repository}: no tag and no digest (and no .Chart.AppVersion default in the templates)"
    try:
        digest = check_reference(repository, tag, digest)
    except LocationError as exc:
        return None, str(exc)
    return f"{repository}{f':{tag}' if tag else ''}{f'@{digest}' if digest else ''}", ""


def excluded(ref: str, patterns: list[str]) -> bool:
    """True when `ref` matches one of `exclude_images`: a whole reference, or a repository (every tag)."""
    repo, tag, digest = split_reference(ref)
    name = str(parse_image_name(repo))
    for pattern in patterns:
        text = pattern.strip()
        if text == ref:
            return True
        has_reference = "@" in text or ":" in text.rsplit("/", 1)[-1]
        try:
            p_repo, p_tag, p_digest = split_reference(text) if has_reference else (text, None, None)
            p_name = str(parse_image_name(p_repo))
        except (ValueError, LocationError):
            continue
        if p_name == name and (p_tag is None or p_tag == tag) and (p_digest is None or p_digest == digest):
            return True
    return False
