"""The closure on small hand-made Debian indexes: apt's choices, baselines, pins, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeplay.errors import BadInput
from kubeplay.osrepo.closure import ClosureRequest, Installed, resolve_closure
from kubeplay.osrepo.solv_binding import solv_for

try:
    solv_for("apt")
except BadInput as exc:  # pragma: no cover - depends on the host
    pytest.skip(f"no libsolv with Debian support: {exc.message}", allow_module_level=True)


def _pkg(name: str, version: str, arch: str = "amd64", **fields: str) -> str:
    extra = "".join(f"{k.replace('_', '-')}: {v}\n" for k, v in fields.items())
    return (
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n{extra}"
        f"Filename: pool/main/{name}_{version}_{arch}.deb\nSize: 100\nSHA256: {'0' * 64}\n"
    )


INDEX = "\n".join(
    [
        _pkg(
            "app",
            "1.0",
            Depends="lib (>= 2), pinentry-curses | pinentry, mail-transport-agent, libsys",
            Recommends="extra",
        ),
        _pkg("lib", "1.0"),
        _pkg("lib", "2.0"),
        _pkg("pinentry-curses", "1.2"),
        _pkg("aaa-pinentry", "9.0", Provides="pinentry"),
        _pkg("postfix", "3.7", Provides="mail-transport-agent"),
        _pkg("libsys", "252"),
        _pkg("aaa-libsys", "246", Provides="libsys (= 252)"),
        _pkg("extra", "1.0", "all"),
        _pkg("broken", "1.0", Depends="nowhere (>= 1)"),
        _pkg("nginx-a", "1.0", Provides="httpd"),
        _pkg("nginx-b", "1.0", Provides="httpd"),
        _pkg("srcpkg-a", "1.1", Source="srcpkg", Depends="srcpkg-common"),
        _pkg("srcpkg-b", "1.0", Source="srcpkg"),
        _pkg("srcpkg-b", "1.1", Source="srcpkg"),
        _pkg("srcpkg-common", "1.1", "all", Source="srcpkg"),
    ]
)


@pytest.fixture
def index(tmp_path: Path) -> list[tuple[str, Path]]:
    path = tmp_path / "Packages"
    path.write_text(INDEX)
    return [("0", path)]


def _names(index: list[tuple[str, Path]], requested: list[str], **kw: object) -> dict[str, str]:
    req = ClosureRequest("apt", "amd64", "debian 12 amd64", requested, **kw)  # type: ignore[arg-type]
    return {c.name: c.version for c in resolve_closure(req, index).packages}


def test_closure_makes_apts_choices(index: list[tuple[str, Path]]) -> None:
    got = _names(index, ["app"])
    # newest lib; first alternative; the one provider of a virtual; the real package before a Provides
    assert got == {"app": "1.0", "lib": "2.0", "pinentry-curses": "1.2", "postfix": "3.7", "libsys": "252"}


def test_recommends_only_when_asked(index: list[tuple[str, Path]]) -> None:
    assert "extra" in _names(index, ["app"], recommends=True)


def test_baseline_shrinks_the_closure_and_old_versions_get_upgraded(index: list[tuple[str, Path]]) -> None:
    got = _names(
        index, ["app"], baseline=[Installed("pinentry-curses", "1.2", "amd64"), Installed("lib", "1.0", "amd64")]
    )
    assert "pinentry-curses" not in got
    assert got["lib"] == "2.0"  # installed 1.0 is too old for app: the upgrade is bundled


def test_same_source_binaries_upgrade_together_like_apt(index: list[tuple[str, Path]]) -> None:
    got = _names(index, ["srcpkg-a"], baseline=[Installed("srcpkg-b", "1.0", "amd64")])
    assert got == {"srcpkg-a": "1.1", "srcpkg-common": "1.1", "srcpkg-b": "1.1"}


def test_version_pin(index: list[tuple[str, Path]]) -> None:
    assert _names(index, ["lib=1.0"]) == {"lib": "1.0"}
    with pytest.raises(BadInput) as err:
        _names(index, ["lib=3.0"])
    assert "1.0, 2.0" in (err.value.hint or "")


def test_unknown_package_names_target_and_closest(index: list[tuple[str, Path]]) -> None:
    with pytest.raises(BadInput) as err:
        _names(index, ["pstfix"])
    assert "pstfix" in err.value.message and "debian 12 amd64" in err.value.message
    assert "postfix" in (err.value.hint or "")


def test_unknown_optional_names_are_skipped(index: list[tuple[str, Path]]) -> None:
    req = ClosureRequest("apt", "amd64", "debian 12 amd64", ["lib"], optional=["no-such-default"])
    result = resolve_closure(req, index)
    assert result.skipped == ["no-such-default"]


def test_unsatisfiable_shows_the_solvers_problem(index: list[tuple[str, Path]]) -> None:
    with pytest.raises(BadInput) as err:
        _names(index, ["broken"])
    assert "nothing provides nowhere" in err.value.message


def test_virtual_with_many_providers_must_be_chosen(index: list[tuple[str, Path]]) -> None:
    with pytest.raises(BadInput) as err:
        _names(index, ["httpd"])
    assert "nginx-a, nginx-b" in err.value.message
