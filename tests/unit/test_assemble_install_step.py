"""wheels/ is resolved again only when its inputs or its bytes changed; an unchanged re-run keeps it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import kubeplay.assemble.install_step as step
from kubeplay.fetch.verified import VerifiedCache


@pytest.fixture
def resolutions(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Replaces the pip-backed add_install_files: records with_wheels, writes two wheels when asked."""
    calls: list[bool] = []

    def fake(bundle_dir: Path, **kwargs: Any) -> None:
        calls.append(kwargs["with_wheels"])
        (bundle_dir / "install.sh").write_text("#!/bin/sh\n")
        if kwargs["with_wheels"]:
            wheels = bundle_dir / "wheels"
            wheels.mkdir(exist_ok=True)
            (wheels / "pip-1-py3-none-any.whl").write_bytes(b"pip wheel")
            (wheels / "requirements-cp311-x86_64.txt").write_text("pip==1 --hash=sha256:00\n")

    monkeypatch.setattr(step, "add_install_files", fake)
    return calls


def build(tmp_path: Path, arches: tuple[str, ...] = ("amd64",), with_wheels: bool = True) -> bool:
    cache = VerifiedCache(tmp_path / "state" / "verified.json")
    return step.add_install_files_kept(
        tmp_path / "bundle",
        tmp_path / "state",
        cache,
        kube_version="1.33.4",
        arches=arches,
        registry_project="library",
        kubespray_identity="tree-1",
        with_wheels=with_wheels,
    )


def test_unchanged_rerun_keeps_wheels_and_a_change_resolves_again(tmp_path: Path, resolutions: list[bool]) -> None:
    (tmp_path / "bundle").mkdir()
    assert build(tmp_path) is False
    assert build(tmp_path) is True  # nothing changed: no pip at all
    assert resolutions == [True, False]
    assert (tmp_path / "bundle" / "install.sh").is_file()  # install files are still written every time

    (tmp_path / "bundle" / "wheels" / "pip-1-py3-none-any.whl").write_bytes(b"tampered")
    assert build(tmp_path) is False  # bytes differ from what was resolved
    assert build(tmp_path, arches=("amd64", "arm64")) is False  # new target
    (tmp_path / "bundle" / "wheels" / "pip-1-py3-none-any.whl").unlink()
    assert build(tmp_path, arches=("amd64", "arm64")) is False  # a wheel is missing
    assert build(tmp_path, arches=("amd64", "arm64")) is True
    assert build(tmp_path, arches=("amd64", "arm64"), with_wheels=False) is False
    assert resolutions == [True, False, True, True, True, False, False]
