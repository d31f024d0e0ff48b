"""The Ansible tests kubespray's variable files use (`version` above all), without Ansible.

Follows ansible-core 2.18 plugins/test/core.py and module_utils/compat/version.py.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from kubeplay.catalog.ansible_filters import FilterError, to_bool, to_text


class LooseVersion:
    """distutils' LooseVersion as vendored by Ansible (the default type of the `version` test)."""

    component_re = re.compile(r"(\d+ | [a-z]+ | \.)", re.VERBOSE)

    def __init__(self, text: str) -> None:
        parts: list[Any] = [x for x in self.component_re.split(text) if x and x != "."]
        self.version = [int(p) if p.isdigit() else p for p in parts]

    def key(self) -> list[Any]:
        return self.version


class StrictVersion:
    version_re = re.compile(r"^(\d+) \. (\d+) (\. (\d+))? ([ab](\d+))?$", re.VERBOSE | re.ASCII)

    def __init__(self, text: str) -> None:
        match = self.version_re.match(text)
        if not match:
            raise ValueError(f"invalid version number '{text}'")
        major, minor, _, patch, pre, pre_num = match.groups()
        self.version = (int(major), int(minor), int(patch or 0))
        self.pre = (pre[0], int(pre_num)) if pre else None

    def key(self) -> tuple[Any, ...]:
        return (self.version, (0,) if self.pre is None else (-1, *self.pre))


VERSION_OPERATORS = {
    "==": "eq",
    "=": "eq",
    "eq": "eq",
    "<": "lt",
    "lt": "lt",
    "<=": "le",
    "le": "le",
    ">": "gt",
    "gt": "gt",
    ">=": "ge",
    "ge": "ge",
    "!=": "ne",
    "<>": "ne",
    "ne": "ne",
}


def version_compare(
    value: Any, version: Any, op: str = "eq", strict: Any = None, version_type: str | None = None
) -> bool:
    """Ansible's `version` test (LooseVersion unless strict/version_type says otherwise)."""
    if not value:
        raise FilterError("Input version value cannot be empty")
    if not version:
        raise FilterError("Version parameter to compare against cannot be empty")
    kind: type[LooseVersion] | type[StrictVersion] = LooseVersion
    if strict or version_type == "strict":
        kind = StrictVersion
    elif version_type not in (None, "loose"):
        raise FilterError(f"version_type {version_type!r} is not supported by kubeplay's evaluator")
    if op not in VERSION_OPERATORS:
        raise FilterError(f"Invalid operator type ({op}). Must be one of {', '.join(map(repr, VERSION_OPERATORS))}")
    compare: Callable[[Any, Any], bool] = getattr(operator, VERSION_OPERATORS[op])
    try:
        return compare(kind(to_text(value)).key(), kind(to_text(version)).key())
    except (TypeError, ValueError) as exc:
        raise FilterError(f"Version comparison failed: {exc}") from None


def test_match(value: Any, pattern: str = "", ignorecase: bool = False, multiline: bool = False) -> bool:
    flags = (re.I if ignorecase else 0) | (re.M if multiline else 0)
    return re.match(pattern, to_text(value), flags) is not None


def test_search(value: Any, pattern: str = "", ignorecase: bool = False, multiline: bool = False) -> bool:
    flags = (re.I if ignorecase else 0) | (re.M if multiline else 0)
    return re.search(pattern, to_text(value), flags) is not None


def truthy(value: Any, convert_bool: bool = False) -> bool:
    if convert_bool:
        value = to_bool(value)
    return bool(value)


def falsy(value: Any, convert_bool: bool = False) -> bool:
    return not truthy(value, convert_bool)


def subset(a: Any, b: Any) -> bool:
    return set(a) <= set(b)


def superset(a: Any, b: Any) -> bool:
    return set(a) >= set(b)


def contains(seq: Any, value: Any) -> bool:
    return value in seq


TESTS: dict[str, Callable[..., Any]] = {
    "version": version_compare,
    "version_compare": version_compare,
    "match": test_match,
    "search": test_search,
    "regex": lambda v, pattern="", ignorecase=False, multiline=False, match_type="search": (
        test_match if match_type == "match" else test_search
    )(v, pattern, ignorecase, multiline),
    "truthy": truthy,
    "falsy": falsy,
    "subset": subset,
    "issubset": subset,
    "superset": superset,
    "issuperset": superset,
    "contains": contains,
}
TESTS.update({f"ansible.builtin.{name}": func for name, func in list(TESTS.items())})
