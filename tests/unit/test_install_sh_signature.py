"""install.sh checks who built the bundle before anything of it runs: SHA256SUMS.sig against allowed_signers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubeplay.bundle.manifest import SIGNATURE_NAME, SUMS_NAME
from kubeplay.bundle.trust import NAMESPACE, generate_key, load_private_key, sign_bundle

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bundle_fixture import flip_byte, install_sh_bundle, run_install_sh

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="requires root (install.sh checks for it)"),
    pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) not installed"),
    pytest.mark.skipif(Path("/etc/kubeplay/allowed_signers").exists(), reason="this machine has its own signers"),
]
# What install.sh says when the signature passed and it went on: the bundle's wheels are for no real Python.
WENT_ON = "no Python here matches the bundle's wheels"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A bundle signed by builder@example, and config.yaml naming allowed_signers (relative to it)."""
    bundle = install_sh_bundle(tmp_path / "bundle")
    for name in ("builder", "mallory"):
        generate_key(tmp_path / "keys" / name, f"{name}@example")
    sign_bundle(bundle, load_private_key(tmp_path / "keys/builder"))
    public = (tmp_path / "keys/builder.pub").read_text().split()
    (tmp_path / "allowed_signers").write_text(f'builder@example namespaces="{NAMESPACE}" {public[0]} {public[1]}\n')
    (tmp_path / "config.yaml").write_text("compose:\n  internal_ip: ''\n  allowed_signers: allowed_signers\n")
    return tmp_path


def _install_sh(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_install_sh(site / "bundle", site / "venv", *args, cwd=site, **env)


def test_signed_by_an_allowed_key_goes_on(site: Path) -> None:
    proc = _install_sh(site, "-c", "config.yaml")
    assert proc.returncode == 2, proc.stderr
    assert 'signed: Good "kubeplay-bundle" signature for builder@example' in proc.stderr
    assert WENT_ON in proc.stderr
    by_env = _install_sh(site, KUBEPLAY_ALLOWED_SIGNERS=str(site / "allowed_signers"))
    assert "signature for builder@example" in by_env.stderr
    assert WENT_ON in by_env.stderr


def test_without_allowed_signers_origin_is_said_to_be_unchecked(site: Path) -> None:
    (site / "config.yaml").write_text("compose:\n  internal_ip: ''\n")
    proc = _install_sh(site, "--config=config.yaml")
    assert "origin not checked" in proc.stderr
    assert WENT_ON in proc.stderr


def test_unsigned_bundle_is_refused(site: Path) -> None:
    (site / "bundle" / SIGNATURE_NAME).unlink()
    proc = _install_sh(site, "-c", "config.yaml")
    assert proc.returncode == 2
    assert "the bundle is not signed (no SHA256SUMS.sig)" in proc.stderr
    assert WENT_ON not in proc.stderr


def test_changed_sums_are_refused_naming_the_signer(site: Path) -> None:
    flip_byte(site / "bundle" / SUMS_NAME)
    proc = _install_sh(site, "-c", "config.yaml")
    assert proc.returncode == 2
    assert "bad signature by builder@example" in proc.stderr
    assert "verifying every file" not in proc.stderr  # refused before sha256sum reads the bundle


def test_signature_by_a_key_not_allowed_is_refused_naming_it(site: Path) -> None:
    sign_bundle(site / "bundle", load_private_key(site / "keys/mallory"))
    proc = _install_sh(site, "-c", "config.yaml")
    assert proc.returncode == 2
    assert "the bundle is signed by ED25519 key SHA256:" in proc.stderr
    assert "does not allow" in proc.stderr
    # a signature of other bytes by a key not listed: still refused, as a bad signature
    shutil.copy(site / "keys/mallory.pub", site / "bundle" / SIGNATURE_NAME)
    garbage = _install_sh(site, "-c", "config.yaml")
    assert garbage.returncode == 2
    assert "bad signature" in garbage.stderr


def test_missing_configured_file_is_bad_input(site: Path) -> None:
    (site / "allowed_signers").unlink()
    proc = _install_sh(site, "-c", "config.yaml")
    assert proc.returncode == 2
    assert "(compose.allowed_signers in config.yaml) does not exist" in proc.stderr


def _path_without_ssh_keygen(site: Path) -> str:
    tools = site / "tools"
    tools.mkdir()
    for directory in os.environ["PATH"].split(":"):
        if not Path(directory).is_dir():
            continue
        for entry in Path(directory).iterdir():
            target = tools / entry.name
            if entry.name != "ssh-keygen" and not target.exists() and os.access(entry, os.X_OK):
                target.symlink_to(entry)
    return str(tools)


def test_without_ssh_keygen_an_earlier_kubeplay_checks_or_install_stops(site: Path) -> None:
    path = _path_without_ssh_keygen(site)
    stopped = _install_sh(site, "-c", "config.yaml", PATH=path)
    assert stopped.returncode == 2
    assert "no ssh-keygen on this node" in stopped.stderr
    # kubeplay from an earlier install (here: this checkout) checks the signature instead
    venv_bin = site / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "kubeplay").write_text(f'#!/bin/sh\ncd {REPO} && exec {sys.executable} -m kubeplay "$@"\n')
    (venv_bin / "kubeplay").chmod(0o755)
    checked = _install_sh(site, "-c", "config.yaml", PATH=path)
    assert "signed by builder@example" in checked.stderr
    assert WENT_ON in checked.stderr
    sign_bundle(site / "bundle", load_private_key(site / "keys/mallory"))
    refused = _install_sh(site, "-c", "config.yaml", PATH=path)
    assert refused.returncode == 2
    assert "does not allow" in refused.stderr
