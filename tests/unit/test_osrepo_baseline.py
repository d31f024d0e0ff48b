"""Baselines captured on nodes: every supported capture format, and what a bad one tells the user."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubeplay.cli.app import app
from kubeplay.errors import BadInput
from kubeplay.osrepo.baseline import baseline_document, parse_baseline, parse_nevra
from kubeplay.osrepo.closure import Installed

DPKG_QUERY = "adduser\t3.134\napt\t2.6.1\nlibc6:amd64\t2.36-9+deb12u10\nold-removed\t\n"
STATUS = """Package: bash
Status: install ok installed
Version: 5.2.15-2+b7
Architecture: amd64

Package: gone
Status: deinstall ok config-files
Version: 1.0
Architecture: amd64
"""
RPM_QA = "bash-5.1.8-6.el9.x86_64\ngpg-pubkey-fd431d51-4ae0493b\nkernel-core-5.14.0-362.8.1.el9_3.x86_64\ntzdata-2023c-1.el9.noarch\n"


def test_dpkg_query_output() -> None:
    family, pkgs = parse_baseline(DPKG_QUERY)
    assert family == "apt"
    assert pkgs == [
        Installed("adduser", "3.134", ""),
        Installed("apt", "2.6.1", ""),
        Installed("libc6", "2.36-9+deb12u10", "amd64"),
    ]


def test_dpkg_status_file_keeps_only_installed() -> None:
    assert parse_baseline(STATUS) == ("apt", [Installed("bash", "5.2.15-2+b7", "amd64")])


def test_rpm_qa_output() -> None:
    family, pkgs = parse_baseline(RPM_QA)
    assert family == "rpm"
    assert Installed("kernel-core", "5.14.0-362.8.1.el9_3", "x86_64") in pkgs
    assert Installed("tzdata", "2023c-1.el9", "noarch") in pkgs
    assert not [p for p in pkgs if p.name.startswith("gpg-pubkey")]


def test_rpm_qa_with_tabs_and_epoch() -> None:
    assert parse_baseline("bind-libs\t32:9.16.23-14.el9\tx86_64\nbash\t0:5.1.8-6.el9\tx86_64\n") == (
        "rpm",
        [Installed("bind-libs", "32:9.16.23-14.el9", "x86_64"), Installed("bash", "5.1.8-6.el9", "x86_64")],
    )


def test_nevra_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="arch"):
        parse_nevra("no-arch-here")


def test_round_trip_through_the_normalized_file() -> None:
    family, pkgs = parse_baseline(RPM_QA)
    assert parse_baseline(baseline_document(family, pkgs, "node1")) == (family, pkgs)


@pytest.mark.parametrize("text", ["", "hello world\n", "a\t1\nbash-5.1.8-6.el9.x86_64\n"])
def test_unreadable_capture_is_bad_input(text: str) -> None:
    with pytest.raises(BadInput):
        parse_baseline(text, "capture.txt")


def test_cli_writes_a_baseline_file(tmp_path: Path) -> None:
    capture = tmp_path / "dpkg.txt"
    capture.write_text(DPKG_QUERY)
    out = tmp_path / "baseline.yaml"
    result = CliRunner().invoke(app, ["baseline", str(capture), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert parse_baseline(out.read_text())[1][2] == Installed("libc6", "2.36-9+deb12u10", "amd64")
