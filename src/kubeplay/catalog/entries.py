"""Render kubespray `downloads:` entries in one variable scope into files and images.

An entry is `download_defaults | combine(entry)`, as roles/download/tasks/main.yml builds it. It is a
container image when `container` is true, else a file fetched from `url`. With `all_entries`, every entry
counts whatever `enabled` says (the planner renders the other kinds, e.g. etcd as an image, as variants).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import UndefinedError

from kubeplay.catalog.locations import LocationError, check_tag, normalize_digest, parse_image_name
from kubeplay.catalog.model import Checksum, RenderProblem
from kubeplay.catalog.templating import SINGLE_VAR, TemplateFailure, VariableScope, referenced_names

HEX_ALGORITHMS = {64: "sha256", 128: "sha512"}
NAME_RE = re.compile(r"[A-Za-z_]\w*")
VERSION_VAR_RE = re.compile(r"\b([A-Za-z_]\w*_version)\b")
UNDEFINED_NAME_RE = re.compile(r"'(\w+)' is undefined")


@dataclass(frozen=True)
class RenderedFile:
    name: str
    url: str
    checksum: Checksum | None
    version: str | None
    groups: tuple[str, ...]
    variable: str


@dataclass(frozen=True)
class RenderedImage:
    name: str
    repo: str
    tag: str | None
    digest: str | None
    groups: tuple[str, ...]
    variable: str


@dataclass
class RenderedEntries:
    files: list[RenderedFile] = field(default_factory=list)
    images: list[RenderedImage] = field(default_factory=list)
    problems: list[RenderProblem] = field(default_factory=list)


class FieldProblem(Exception):
    def __init__(self, problem: RenderProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def parse_checksum(value: Any) -> Checksum | None:
    """`sha256:<hex>`, `sha512:<hex>` or bare hex (older releases) -> Checksum; empty/None -> None."""
    if value in (None, "", 0, "None") or value is False:
        return None
    text = str(value).strip().lower()
    algorithm, sep, hexdigits = text.partition(":")
    if not sep:
        algorithm, hexdigits = HEX_ALGORITHMS.get(len(text), ""), text
    if algorithm not in ("sha256", "sha512") or len(hexdigits) != {"sha256": 64, "sha512": 128}[algorithm]:
        raise ValueError(f"unsupported checksum {value!r} (expected sha256:<hex> or sha512:<hex>)")
    if any(c not in "0123456789abcdef" for c in hexdigits):
        raise ValueError(f"checksum {value!r} is not hexadecimal")
    return Checksum(algorithm=algorithm, hex=hexdigits)  # type: ignore[arg-type]


def is_absent(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value in {"", "None"})


def single_variable(raw: Any) -> str | None:
    match = SINGLE_VAR.match(raw) if isinstance(raw, str) else None
    return match.group(1) if match and match.group(1) else None


class EntryRenderer:
    """Renders entries of `downloads` in one scope (one arch, one configuration)."""

    def __init__(self, scope: VariableScope, label: str = "") -> None:
        self.scope = scope
        self.label = label
        raw_defaults = scope.raw.get("download_defaults")
        self.defaults: Mapping[str, Any] = raw_defaults if isinstance(raw_defaults, Mapping) else {}

    def render(self, name: str, raw_entry: Mapping[str, Any], all_entries: bool, out: RenderedEntries) -> None:
        entry = {**self.defaults, **raw_entry}
        try:
            if not all_entries and not self.field(name, entry, "enabled"):
                return
            want_image = bool(self.field(name, entry, "container"))
            want_file = not want_image
        except FieldProblem as exc:
            out.problems.append(exc.problem)
            return
        if want_file:
            self.render_file(name, entry, out)
        if want_image:
            self.render_image(name, entry, out)

    def render_file(self, name: str, entry: Mapping[str, Any], out: RenderedEntries) -> None:
        checksum_key = "checksum" if "checksum" in entry else "sha256"
        try:
            url = self.field(name, entry, "url")
            if is_absent(url):
                return
            if not isinstance(url, str):
                raise self.problem(name, "url", f"url rendered to {type(url).__name__}, not text")
            try:
                checksum = parse_checksum(self.field(name, entry, checksum_key))
            except ValueError as exc:
                raise self.problem(name, checksum_key, str(exc)) from None
            version = self.file_version(name, entry)
            groups = self.groups(name, entry)
        except FieldProblem as exc:
            out.problems.append(exc.problem)
            return
        variable = single_variable(entry.get("url")) or f"downloads.{name}.url"
        out.files.append(RenderedFile(name, url.strip(), checksum, version, groups, variable))

    def render_image(self, name: str, entry: Mapping[str, Any], out: RenderedEntries) -> None:
        try:
            repo = str(self.field(name, entry, "repo")).strip()
            tag_value = self.field(name, entry, "tag") if "tag" in entry else None
            tag = None if is_absent(tag_value) else str(tag_value).strip()
            digest_value = self.field(name, entry, "sha256") if "sha256" in entry else None
            try:
                parse_image_name(repo)
                if tag is not None:
                    check_tag(tag)
                digest = None if is_absent(digest_value) else normalize_digest(str(digest_value))
            except LocationError as exc:
                raise self.problem(name, "repo", str(exc)) from None
            if tag is None and digest is None:
                raise self.problem(name, "tag", "image has neither a tag nor a digest")
            groups = self.groups(name, entry)
        except FieldProblem as exc:
            out.problems.append(exc.problem)
            return
        variable = single_variable(entry.get("repo")) or f"downloads.{name}.repo"
        out.images.append(RenderedImage(name, repo, tag, digest, groups, variable))

    def groups(self, name: str, entry: Mapping[str, Any]) -> tuple[str, ...]:
        value = self.field(name, entry, "groups") if "groups" in entry else []
        if isinstance(value, str):
            value = [value]
        return tuple(str(g) for g in value) if isinstance(value, list) else ()

    def file_version(self, name: str, entry: Mapping[str, Any]) -> str | None:
        if "version" in entry:
            value = self.field(name, entry, "version")
            return None if is_absent(value) else str(value)
        # No explicit version: the first *_version variable the URL template reads (kube_version, etcd_version…).
        raw = entry.get("url")
        via = single_variable(raw)
        if via is not None:
            raw = self.scope.raw.get(via)
        match = VERSION_VAR_RE.search(raw) if isinstance(raw, str) else None
        if match is None or match.group(1) not in self.scope.raw:
            return None
        value = self.scope[match.group(1)]
        return str(value) if isinstance(value, str | int | float) else None

    def field(self, name: str, entry: Mapping[str, Any], key: str) -> Any:
        raw = entry.get(key)
        try:
            return self.scope.template(raw)
        except UndefinedError as exc:
            raise self.problem(name, key, str(exc), culprit=self.culprit(raw, str(exc))) from None
        except TemplateFailure as exc:
            raise self.problem(name, key, str(exc), culprit=self.culprit(raw, str(exc))) from None

    def culprit(self, raw: Any, message: str) -> str | None:
        """The variable to blame: the first one the field reads that failed, or the undefined name itself."""
        names = referenced_names(self.scope.engine, raw)
        text = raw if isinstance(raw, str) else ""
        for match in NAME_RE.finditer(text):
            if match.group(0) in names and match.group(0) in self.scope.failed:
                return match.group(0)
        undefined = UNDEFINED_NAME_RE.search(message)
        if undefined:
            return undefined.group(1)
        return single_variable(raw)

    def problem(self, name: str, key: str, message: str, culprit: str | None = None) -> FieldProblem:
        prefix = f"[{self.label}] " if self.label else ""
        return FieldProblem(
            RenderProblem(
                entry=name, variable=culprit or f"downloads.{name}.{key}", message=f"{prefix}{key}: {message}"
            )
        )
