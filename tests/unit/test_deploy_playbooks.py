"""kubeplay's own playbooks (node prep, its undo, preflight) load: YAML parses and ansible-playbook accepts them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.conftest import skip_or_fail

from kubeplay.deploy.steps import PLAYBOOKS


@pytest.mark.parametrize("path", sorted(PLAYBOOKS.rglob("*.yml")), ids=lambda p: p.name)
def test_playbook_files_are_valid_yaml_lists(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, list) and data
    assert all(isinstance(item, dict) and item.get("name") for item in data)


@pytest.mark.parametrize("name", ["preflight.yml", "node-repair.yml", "node-prep.yml", "node-prep-undo.yml"])
def test_ansible_accepts_the_playbook(name: str) -> None:
    binary = Path(sys.executable).parent / "ansible-playbook"
    if not binary.exists() and not shutil.which("ansible-playbook"):
        skip_or_fail("ansible-playbook not installed")
    proc = subprocess.run(
        [str(binary if binary.exists() else "ansible-playbook"), "--syntax-check", "-i", "localhost,", str(PLAYBOOKS / name)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
