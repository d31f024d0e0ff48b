"""Static dependency analysis of raw kubespray variables: which variables a template reads, transitively."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubeplay.catalog.templating import TemplateEngine, referenced_names

# Facts that make a value differ per CPU architecture.
ARCH_FACTS = frozenset({"ansible_architecture", "ansible_machine", "host_architecture", "image_arch"})


class DependencyGraph:
    """Which variables each raw value reads, directly and transitively (memoised)."""

    def __init__(self, engine: TemplateEngine, raw: Mapping[str, Any]) -> None:
        self.engine = engine
        self.raw = raw
        self._direct: dict[str, frozenset[str]] = {}
        self._closure: dict[str, frozenset[str]] = {}

    def direct(self, name: str) -> frozenset[str]:
        if name not in self._direct:
            value = self.raw.get(name)
            self._direct[name] = frozenset(referenced_names(self.engine, value))
        return self._direct[name]

    def closure_of_value(self, value: Any) -> frozenset[str]:
        """Every variable a raw value reads, following variable definitions."""
        return self.closure_of_names(referenced_names(self.engine, value))

    def closure_of_names(self, names: Iterable[str]) -> frozenset[str]:
        seen: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in self._closure:
                seen |= self._closure[name]
                continue
            stack.extend(self.direct(name))
        return frozenset(seen)

    def closure(self, name: str) -> frozenset[str]:
        if name not in self._closure:
            self._closure[name] = self.closure_of_names(self.direct(name)) | {name}
        return self._closure[name]
