"""The deploy-node path with no network at all: wheels from PyPI at build time, then pack, extract,
install.sh inside an empty network namespace creates the venv from wheels/ and runs kubeplay from it.

Needs PyPI at build time (wheels are cached in wheels/ of the cache root, see KUBEPLAY_CACHE_DIR) and
root (install.sh insists on it; `unshare --net` makes the air gap).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubeplay.bundle.extract import extract_bundle
from kubeplay.bundle.install_files import add_install_files
from kubeplay.bundle.manifest import write_sha256sums
from kubeplay.bundle.pack import pack_checked_bundle
from kubeplay.bundle.wheels import wheel_name_version

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bundle_fixture import STEM, flip_byte, make_bundle

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="requires root (install.sh and unshare --net)"),
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the test bundle carries x86_64 wheels"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) not installed"),
]

PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}-x86_64"


@pytest.fixture(scope="module")
def built_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = make_bundle(tmp_path_factory.mktemp("build") / "bundle")
    files = add_install_files(bundle, kube_version="1.33.4", arches=["amd64"], pythons=[PYTHON])
    assert files.wheels is not None
    assert set(files.wheels.requirements) == {TAG}
    write_sha256sums(bundle, use_cache=False)
    return bundle


def _offline_install_sh(bundle: Path, venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(venv.parent),
        "KUBEPLAY_VENV": str(venv),
        "KUBEPLAY_LINK": "",
        "KUBEPLAY_PYTHON": sys.executable,
        "KUBEPLAY_COMMAND": "verify",
    }
    return subprocess.run(
        ["unshare", "--net", "sh", str(bundle / "install.sh"), *args],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        check=False,
    )


def test_wheels_cover_kubeplay_ansible_and_kubespray_requirements(built_bundle: Path) -> None:
    wheels = {wheel_name_version(p.name)[0]: p.name for p in (built_bundle / "wheels").glob("*.whl")}
    for project in ("kubeplay", "ansible", "ansible-core", "ansible-runner", "jmespath", "netaddr", "pip"):
        assert project in wheels, f"{project} missing from wheels/"
    core_version = wheel_name_version(wheels["ansible-core"])[1]
    assert core_version.startswith("2.18."), core_version  # the fixture's ansible_version.yml: >=2.18.0,<2.19.0
    assert not list((built_bundle / "wheels").glob("*.tar.gz")), "an sdist would need a compiler on the deploy node"
    requirements = (built_bundle / "wheels" / f"requirements-{TAG}.txt").read_text()
    assert all("--hash=sha256:" in line for line in requirements.splitlines())


def test_pack_extract_and_install_sh_with_no_network(built_bundle: Path, tmp_path: Path) -> None:
    archive = pack_checked_bundle(built_bundle, tmp_path / "media", split_size=32 << 20)
    assert len(archive.parts) > 1  # the wheels alone are larger than one part
    site = extract_bundle(archive.parts_manifest or archive.archive, tmp_path / "site").root
    venv = tmp_path / "opt" / "venv"
    first = _offline_install_sh(site, venv, str(site))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "creating" in first.stderr
    assert "all digests match" in first.stderr  # `kubeplay verify` ran from the new venv, offline
    probe = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import ansible, ansible_runner, jmespath, netaddr, kubeplay; print(ansible.__version__)",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith("2.18.")
    again = _offline_install_sh(site, venv, str(site))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "creating" not in again.stderr  # the venv is reused when the wheel set is unchanged


def test_install_sh_refuses_a_tampered_wheel_before_installing(built_bundle: Path, tmp_path: Path) -> None:
    site = tmp_path / STEM
    shutil.copytree(built_bundle, site)
    wheel = next((site / "wheels").glob("jmespath-*.whl"))
    flip_byte(wheel)
    venv = tmp_path / "venv"
    proc = _offline_install_sh(site, venv, str(site))
    assert proc.returncode == 1
    assert f"wheels/{wheel.name}: FAILED" in proc.stderr
    assert not venv.exists()
    # even with the SHA256SUMS check skipped, the hash-pinned requirements stop the changed wheel
    skipped = subprocess.run(
        ["unshare", "--net", "sh", str(site / "install.sh"), str(site)],
        capture_output=True,
        text=True,
        timeout=900,
        env={
            "PATH": os.environ["PATH"],
            "KUBEPLAY_VENV": str(venv),
            "KUBEPLAY_LINK": "",
            "KUBEPLAY_PYTHON": sys.executable,
            "KUBEPLAY_COMMAND": "verify",
            "KUBEPLAY_SKIP_VERIFY": "1",
        },
        check=False,
    )
    assert skipped.returncode == 1
    assert "HASHES" in skipped.stderr.upper() or "hash" in skipped.stderr
    assert not (venv / "bin/kubeplay").exists()
