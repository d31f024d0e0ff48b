"""Helm dependency version constraints: the highest version of an index that satisfies one."""

from __future__ import annotations

import pytest

from kubeplay.catalog.semver import ConstraintError, best_match

VERSIONS = [
    "0.1.0",
    "0.2.0",
    "0.2.5",
    "1.0.0",
    "1.2.0",
    "1.2.3",
    "1.2.9",
    "1.3.0",
    "1.10.1",
    "2.0.0-rc.1",
    "2.0.0",
    "2.1.0",
]


@pytest.mark.parametrize(
    ("constraint", "expected"),
    [
        ("1.2.3", "1.2.3"),
        ("=1.2.3", "1.2.3"),
        ("~1.2.0", "1.2.9"),
        ("~1.2", "1.2.9"),
        ("~1", "1.10.1"),
        ("^1.2.0", "1.10.1"),
        ("^0.2.0", "0.2.5"),
        ("^2.0.0-rc.1", "2.1.0"),
        ("1.2.x", "1.2.9"),
        ("1.x", "1.10.1"),
        ("*", "2.1.0"),
        (">=1.2.0 <1.3.0", "1.2.9"),
        (">=1.2.0, <1.3.0", "1.2.9"),
        (">1.2", "2.1.0"),
        ("<=1.2", "1.2.9"),
        ("<2.0.0", "1.10.1"),
        ("< 1.0.0 || >= 2.1.0", "2.1.0"),
        ("<1.0.0 || ~1.2.0", "1.2.9"),
        (">=1.2.0 !=1.2.9 <1.3.0", "1.2.3"),
        ("3.x", None),
        ("2.0.0-rc.1", "2.0.0-rc.1"),
    ],
)
def test_best_match(constraint: str, expected: str | None) -> None:
    assert best_match(constraint, VERSIONS) == expected


def test_prereleases_only_when_asked_for() -> None:
    assert best_match("^2.0.0", ["2.0.0-rc.1"]) is None
    assert best_match(">=2.0.0-0", ["2.0.0-rc.1"]) == "2.0.0-rc.1"


def test_bad_constraint() -> None:
    with pytest.raises(ConstraintError):
        best_match(">=one", VERSIONS)
