"""The CLI keeps copies of a few constants (help text, option defaults) so it starts without importing
the heavy modules that own them; the copies must match."""

from __future__ import annotations

from kubeplay.bootstrap.steps import STEP_NAMES
from kubeplay.cli import deploy, install, lab
from kubeplay.deploy.context import DEFAULT_STATE
from kubeplay.lab.nodes import BOOT_TIMEOUT, DEFAULT_SUBNET


def test_cli_copies_match_their_owners() -> None:
    assert list(install.STEP_NAMES) == STEP_NAMES
    assert deploy.DEFAULT_STATE == DEFAULT_STATE
    assert (lab.DEFAULT_SUBNET, lab.BOOT_TIMEOUT) == (DEFAULT_SUBNET, BOOT_TIMEOUT)
