"""rpm modularity as dnf applies it: packages of streams that are not enabled are hidden from the solver.

Enabled streams are the repo's defaults (modulemd-defaults) overridden by os[].modules (`name:stream`).
Modular packages of other streams are hidden, and so are non-modular packages whose name an enabled
stream ships (dnf's hybrid filtering).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubeplay.errors import BadInput


@dataclass
class ModuleStream:
    name: str
    stream: str
    artifacts: set[str]  # NEVRAs: name-epoch:version-release.arch
    document: dict[str, Any]


@dataclass
class ModuleIndex:
    streams: list[ModuleStream] = field(default_factory=list)
    defaults: dict[str, str] = field(default_factory=dict)  # module -> default stream
    default_docs: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_modules(paths: list[Path]) -> ModuleIndex:
    """All modulemd and modulemd-defaults documents of the given modules.yaml files."""
    index = ModuleIndex()
    for path in paths:
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError as exc:
            raise BadInput(f"modules.yaml of {path} does not parse: {exc}", hint="the upstream repo is broken") from exc
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            data = doc.get("data") or {}
            if doc.get("document") == "modulemd":
                rpms = ((data.get("artifacts") or {}).get("rpms")) or []
                index.streams.append(
                    ModuleStream(str(data.get("name")), str(data.get("stream")), {str(r) for r in rpms}, doc)
                )
            elif doc.get("document") == "modulemd-defaults" and data.get("stream") is not None:
                index.defaults[str(data.get("module"))] = str(data["stream"])
                index.default_docs[str(data.get("module"))] = doc
    return index


def enabled_streams(index: ModuleIndex, requested: list[str]) -> dict[str, str]:
    """module -> enabled stream: defaults, overridden by `name:stream` entries; BadInput for unknown ones."""
    enabled = dict(index.defaults)
    known = {(s.name, s.stream) for s in index.streams}
    for item in requested:
        name, sep, stream = item.partition(":")
        if not sep or (name, stream) not in known:
            streams = sorted(f"{n}:{s}" for n, s in known)
            raise BadInput(
                f"unknown module stream {item!r}",
                hint=f"available: {', '.join(streams) or 'none (the repos carry no modules)'}",
            )
        enabled[name] = stream
    return enabled


def nevra(s: Any) -> str:
    """A libsolv solvable as modulemd writes artifacts: name-epoch:version-release.arch."""
    evr = s.evr if ":" in s.evr else f"0:{s.evr}"
    return f"{s.name}-{evr}.{s.arch}"


class ModularFilter:
    """Callable deciding whether dnf would hide a solvable, given the enabled streams."""

    def __init__(self, index: ModuleIndex, enabled: dict[str, str]) -> None:
        self.modular: set[str] = set()
        self.active: set[str] = set()
        for s in index.streams:
            self.modular |= s.artifacts
            if enabled.get(s.name) == s.stream:
                self.active |= s.artifacts
        self.active_names = {a.rsplit("-", 2)[0] for a in self.active if not a.endswith((".src", ".nosrc"))}

    def __call__(self, s: Any) -> bool:
        key = nevra(s)
        if key in self.modular:
            return key not in self.active
        return s.name in self.active_names


def modules_document(index: ModuleIndex, enabled: dict[str, str], bundled: set[str]) -> str | None:
    """modules.yaml for the bundle: enabled streams with a bundled artifact, and defaults naming them."""
    docs: list[dict[str, Any]] = []
    used: set[str] = set()
    for s in index.streams:
        if enabled.get(s.name) == s.stream and s.artifacts & bundled:
            docs.append(s.document)
            used.add(s.name)
    for name in sorted(used):
        default = {
            "document": "modulemd-defaults",
            "version": 1,
            "data": {"module": name, "stream": enabled[name]},
        }
        upstream = index.default_docs.get(name)
        if upstream is not None and (upstream.get("data") or {}).get("stream") == enabled[name]:
            default = upstream
        docs.append(default)
    if not docs:
        return None
    return yaml.safe_dump_all(docs, explicit_start=True, explicit_end=True, sort_keys=False)
