"""Helm's version constraints (Masterminds/semver), for the dependencies a chart package does not carry:
`1.2.3`, `=`, `!=`, `>`, `>=`, `<`, `<=`, `~1.2` (patch updates), `^1.2` (no major change; `^0.2` no minor
change), wildcards `1.2.x`/`1.*`/`*`, comparators joined by `,` or spaces (and), alternatives by `||` (or).
A prerelease matches only a constraint that names a prerelease, as in Helm.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

VERSION_RE = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
PARTIAL_RE = re.compile(r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-([0-9A-Za-z.-]+))?$")
COMPARATOR_RE = re.compile(r"(!=|>=|<=|=>|=<|>|<|=|~>|~|\^)?\s*([^\s,<>=!~^][^\s,]*)")

Key = tuple[int, int, int, tuple[tuple[int, int | str], ...]]


class ConstraintError(ValueError):
    """A version constraint kubeplay cannot read."""


def version_key(text: str) -> Key | None:
    """Sort key of a version (a release sorts after its prereleases); None when not a version."""
    match = VERSION_RE.match(text.strip())
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    pre_key: tuple[tuple[int, int | str], ...] = (
        tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")) if pre else ((2, 0),)
    )
    return int(major), int(minor or 0), int(patch or 0), pre_key


def _bounds(op: str, text: str) -> list[tuple[str, Key]]:
    match = PARTIAL_RE.match(text)
    if match is None:
        raise ConstraintError(f"{op}{text!r} is not a version")
    parts = [None if p is None or p in "xX*" else int(p) for p in match.groups()[:3]]
    pre = match.group(4)
    wild = next((i for i, p in enumerate(parts) if p is None), 3)
    nums = [p or 0 for p in parts]
    # without a prerelease, the bound sits below every prerelease of that version
    pre_key = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")) if pre else ((0, -1),)
    low: Key = (nums[0], nums[1], nums[2], pre_key)

    def bump(i: int) -> Key:
        up = [*nums[:i], nums[i] + 1, *([0] * (2 - i))] if i < 3 else nums
        return (up[0], up[1], up[2], ((0, -1),))

    if op in ("", "="):
        if wild == 0:
            return []
        if wild < 3:
            return [(">=", low), ("<", bump(wild - 1))]
        return [("=", version_key(text) or low)]
    if op == "!=":
        return [("!=", version_key(text) or low)]
    if op in ("~", "~>"):
        return [(">=", low), ("<", bump(1 if wild >= 2 else 0))]
    if op == "^":
        first = next((i for i, n in enumerate(nums[:wild]) if n != 0), min(wild, 3) - 1)
        return [(">=", low), ("<", bump(max(first, 0)))]
    if op in (">", "<=") and wild == 0:
        return [("<", low)] if op == ">" else []  # "> *" matches nothing, "<= *" everything
    if op == ">":  # "> 1.2" is above every 1.2.x
        return [(">=", bump(wild - 1))] if wild < 3 else [(">", version_key(text) or low)]
    if op == "<=":  # "<= 1.2" takes every 1.2.x
        return [("<", bump(wild - 1))] if wild < 3 else [("<=", version_key(text) or low)]
    return [({"=>": ">=", "=<": "<="}.get(op, op), low)]


def _parse(constraint: str) -> list[list[tuple[str, Key]]]:
    alternatives = []
    for alternative in constraint.split("||"):
        comparators: list[tuple[str, Key]] = []
        for op, text in COMPARATOR_RE.findall(alternative.replace(",", " ")):
            comparators += _bounds(op or "", text)
        alternatives.append(comparators)
    return alternatives


def _holds(key: Key, op: str, bound: Key) -> bool:
    return {
        "=": key == bound,
        "!=": key != bound,
        ">": key > bound,
        ">=": key >= bound,
        "<": key < bound,
        "<=": key <= bound,
    }[op]


def best_match(constraint: str, versions: Iterable[str]) -> str | None:
    """The highest of `versions` satisfying `constraint`, or None; raise ConstraintError for a bad constraint."""
    alternatives = _parse(constraint)
    allow_pre = "-" in constraint
    best: tuple[Key, str] | None = None
    for version in versions:
        key = version_key(str(version))
        if key is None or (key[3] != ((2, 0),) and not allow_pre):
            continue
        matches = any(all(_holds(key, op, bound) for op, bound in alt) for alt in alternatives)
        if matches and (best is None or key > best[0]):
            best = (key, str(version))
    return None if best is None else best[1]
