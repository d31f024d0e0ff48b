"""`kubeplay build` input checks that need no upstream: they fail fast, with exit code 2 and a hint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml


def kubeplay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubeplay", *args], capture_output=True, text=True, timeout=120, check=False
    )


def spec(tmp_path: Path, **kubespray: str) -> Path:
    path = tmp_path / "bundle.yaml"
    path.write_text(yaml.safe_dump({"kubespray": {"version": "v2.31.0", **kubespray}}))
    return path


def test_refuses_to_build_into_a_directory_that_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine\n")
    run = kubeplay("build", str(spec(tmp_path, source="/nonexistent")), "-o", str(tmp_path / "home"))
    assert run.returncode == 2
    assert "not empty and not a kubeplay bundle" in run.stderr
    assert (tmp_path / "home" / "notes.txt").read_text() == "mine\n"


def test_url_source_needs_a_sha256(tmp_path: Path) -> None:
    run = kubeplay("build", str(spec(tmp_path, source="https://example.invalid/k.tar.gz")), "-o", str(tmp_path / "b"))
    assert run.returncode == 2
    assert "kubespray.sha256 is required" in run.stderr


def test_wrong_archive_digest_names_both(tmp_path: Path) -> None:
    archive = tmp_path / "kubespray-v2.31.0.tar.gz"
    archive.write_bytes(b"not really an archive")
    run = kubeplay("build", str(spec(tmp_path, source=str(archive), sha256="0" * 64)), "-o", str(tmp_path / "b"))
    assert run.returncode == 2
    assert "0" * 64 in run.stderr and "sha256 mismatch" in run.stderr


def test_a_base_that_is_not_one_stops_the_build_before_it_starts(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a bundle\n")
    for base, message in (
        (tmp_path / "absent.json", "no such file or directory"),
        (tmp_path / "notes.txt", "neither an inventory.json, a bundle directory nor a packed bundle"),
    ):
        run = kubeplay(
            "build", str(spec(tmp_path, source="/nonexistent")), "-o", str(tmp_path / "b"), "--base", str(base)
        )
        assert run.returncode == 2, run.stderr
        assert f"{base}: {message}" in run.stderr and "kubeplay status --inventory" in run.stderr
        assert "Traceback" not in run.stderr
        assert not (tmp_path / "b").exists()


def test_base_content_needs_a_base(tmp_path: Path) -> None:
    run = kubeplay("build", str(spec(tmp_path, source="/nonexistent")), "--base-content", str(tmp_path))
    assert run.returncode == 2
    assert "--base-content needs --base" in run.stderr
