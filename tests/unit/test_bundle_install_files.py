"""install.sh, config-sample.yaml and the wheels/ plan: what the deploy node gets before kubeplay runs."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from tests.conftest import require_shared

from kubeplay.bundle.install_files import add_install_files, render_config_sample
from kubeplay.bundle.manifest import write_sha256sums
from kubeplay.bundle.wheels import (
    FALLBACK_ANSIBLE_CORE,
    WheelTarget,
    ansible_core_range,
    kubespray_requirements,
    requirements_text,
    targets_for,
    wheel_name_version,
)
from kubeplay.config.install import load_install_config
from kubeplay.errors import BadInput


def _kubespray_file(version: str, member: str, dest: Path) -> Path:
    archive = require_shared("upstream", "kubespray", f"kubespray-v{version}.tar.gz")
    with tarfile.open(archive) as tar:
        data = tar.extractfile(f"kubespray-{version}/{member}")
        assert data is not None
        target = dest / member
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.read())
    return dest


@pytest.mark.parametrize(("version", "expected"), [("2.30.0", ">=2.17.3,<2.18.0"), ("2.31.0", ">=2.18.0,<2.19.0")])
def test_ansible_core_range_from_real_kubespray(tmp_path: Path, version: str, expected: str) -> None:
    tree = _kubespray_file(version, "playbooks/ansible_version.yml", tmp_path)
    assert ansible_core_range(tree) == expected


def test_ansible_core_range_falls_back(tmp_path: Path) -> None:
    assert ansible_core_range(tmp_path) == FALLBACK_ANSIBLE_CORE
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks/ansible_version.yml").write_text("- vars:\n    minimal_ansible_version: '{{ x }}'\n")
    assert ansible_core_range(tmp_path) == FALLBACK_ANSIBLE_CORE


def test_kubespray_requirements_from_real_kubespray(tmp_path: Path) -> None:
    tree = _kubespray_file("2.31.0", "requirements.txt", tmp_path)
    reqs = kubespray_requirements(tree)
    assert reqs[0].startswith("ansible==")
    assert {r.split("==")[0] for r in reqs} == {"ansible", "cryptography", "jmespath", "netaddr"}


def test_targets_and_tags() -> None:
    targets = targets_for(["amd64", "arm64"], ["3.11", "3.12"])
    assert [t.tag for t in targets] == ["cp311-x86_64", "cp312-x86_64", "cp311-aarch64", "cp312-aarch64"]
    args = WheelTarget("3.11", "arm64").pip_platform_args()
    assert "manylinux_2_28_aarch64" in args and "manylinux2014_aarch64" in args
    assert args[args.index("--python-version") + 1] == "3.11"
    with pytest.raises(BadInput):
        targets_for(["s390x"])
    with pytest.raises(BadInput):
        targets_for(["amd64"], ["3.9"])


def test_requirements_pin_every_wheel_by_hash(tmp_path: Path) -> None:
    a = tmp_path / "PyYAML-6.0.2-cp311-cp311-manylinux_2_17_x86_64.whl"
    b = tmp_path / "pyyaml-6.0.2-cp311-cp311-manylinux_2_17_aarch64.whl"
    c = tmp_path / "ansible_core-2.18.1-py3-none-any.whl"
    for path in (a, b, c):
        path.write_bytes(path.name.encode())
    text = requirements_text([a, b, c])
    lines = text.splitlines()
    assert lines[0] == f"ansible-core==2.18.1 --hash=sha256:{hashlib.sha256(c.name.encode()).hexdigest()}"
    assert lines[1].startswith("pyyaml==6.0.2 ") and lines[1].count("--hash=sha256:") == 2
    assert wheel_name_version("typing_extensions-4.12.2-py3-none-any.whl") == ("typing-extensions", "4.12.2")


def test_config_sample_is_valid_for_install_and_names_the_bundle_version(tmp_path: Path) -> None:
    sample = tmp_path / "config-sample.yaml"
    sample.write_text(render_config_sample("v1.33.4", registry_project="k8s"))
    config = load_install_config(sample)
    assert config.kubespray.kube_version is not None
    assert config.kubespray.kube_version.removeprefix("v") == "1.33.4"
    assert config.default.image_repository == "k8s"
    assert config.compose.internal_ip is None  # empty: detected at install


def _bundle_with_install_files(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "wheels").mkdir()
    (bundle / "wheels/requirements-cp30-nomachine.txt").write_text("")
    (bundle / "kubeplay.json").write_text("{}")
    files = add_install_files(bundle, kube_version="1.33.4", arches=["amd64"], with_wheels=False)
    assert files.install_script == bundle / "install.sh"
    write_sha256sums(bundle, use_cache=False)
    return bundle


def _run_install_sh(bundle: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(bundle / "install.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ["PATH"], "KUBEPLAY_LINK": "", **env},
        check=False,
    )


def test_install_sh_is_executable_posix_sh(tmp_path: Path) -> None:
    bundle = _bundle_with_install_files(tmp_path)
    script = bundle / "install.sh"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert script.read_text().startswith("#!/bin/sh\n")
    for shell in ("sh", "dash", "busybox"):
        if shutil.which(shell):
            args = [shell, "sh", "-n", str(script)] if shell == "busybox" else [shell, "-n", str(script)]
            assert subprocess.run(args, capture_output=True, check=False).returncode == 0, shell


def test_install_sh_refuses_non_root(tmp_path: Path) -> None:
    bundle = _bundle_with_install_files(tmp_path)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "id").write_text("#!/bin/sh\necho 1000\n")
    (fake / "id").chmod(0o755)
    proc = _run_install_sh(bundle, {"PATH": f"{fake}:{os.environ['PATH']}"})
    assert proc.returncode == 1
    assert "must run as root" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="requires root (install.sh checks for it)")
def test_install_sh_refuses_a_tampered_bundle_naming_the_file(tmp_path: Path) -> None:
    bundle = _bundle_with_install_files(tmp_path)
    (bundle / "config-sample.yaml").write_text("tampered: true\n")
    proc = _run_install_sh(bundle, {"KUBEPLAY_VENV": str(tmp_path / "venv")})
    assert proc.returncode == 1
    assert "config-sample.yaml: FAILED" in proc.stderr
    assert "does not match SHA256SUMS" in proc.stderr
    assert not (tmp_path / "venv").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="requires root (install.sh checks for it)")
def test_install_sh_without_matching_python_wheels_is_bad_input(tmp_path: Path) -> None:
    bundle = _bundle_with_install_files(tmp_path)
    proc = _run_install_sh(bundle, {"KUBEPLAY_VENV": str(tmp_path / "venv")})
    assert proc.returncode == 2
    assert "no Python here matches the bundle's wheels" in proc.stderr
    assert "cp30-nomachine" in proc.stderr
