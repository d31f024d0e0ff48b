"""install.sh of a second bundle on the same deploy node: the venv follows the new bundle's pinned wheels
(kubespray's Ansible moves with kubespray: v2.30 pins ansible-core 2.17, v2.31 ansible-core 2.18), and
nothing of the old wheel set stays behind. Wheels made here, offline: a stub `kubeplay` that prints the
ansible-core it runs with, a stub ansible-core of each version, pip from this Python's ensurepip."""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
from tests.bundle_fixture import KUBE_VERSION, run_install_sh
from tests.conftest import skip_or_fail

from kubeplay.bundle.install_files import add_install_files
from kubeplay.bundle.manifest import write_sha256sums

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="requires root (install.sh checks for it)"),
    pytest.mark.skipif(Path("/etc/kubeplay/allowed_signers").exists(), reason="this machine has its own signers"),
]
STUB = """import importlib.metadata as m


def main():
    names = sorted(d.metadata["Name"] for d in m.distributions())
    print("ansible-core", m.version("ansible-core"), "installed:", " ".join(names))
"""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(dest: Path, name: str, version: str, files: dict[str, str], scripts: str = "") -> Path:
    """A pure-Python wheel of `files` (path -> text), with console `scripts` (entry_points.txt lines)."""
    dist = f"{name.replace('-', '_')}-{version}"
    info = f"{dist}.dist-info"
    body = dict(files)
    body[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    body[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: kubeplay-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    if scripts:
        body[f"{info}/entry_points.txt"] = f"[console_scripts]\n{scripts}\n"
    record = [f"{p},sha256={_b64(t.encode())},{len(t.encode())}" for p, t in body.items()]
    body[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    path = dest / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for p, t in body.items():
            zf.writestr(p, t)
    return path


def bundle(root: Path, ansible_core: str, extra: str | None = None) -> Path:
    """A bundle install.sh accepts whose wheels pin `ansible-core==<ansible_core>` (and `extra`, if given)."""
    wheels = root / "wheels"
    wheels.mkdir(parents=True)
    pips = sorted((Path(sys.base_prefix) / "lib").glob("python3.*/ensurepip/_bundled/pip-*.whl"))
    if not pips:
        skip_or_fail(f"no pip wheel in {sys.base_prefix}'s ensurepip")
    shutil.copy(pips[-1], wheels)
    made = [
        make_wheel(wheels, "kubeplay", "0.0.1", {"kubeplay_stub.py": STUB}, "kubeplay = kubeplay_stub:main"),
        make_wheel(wheels, "ansible-core", ansible_core, {"ansible_stub.py": ""}),
    ]
    if extra:
        made.append(make_wheel(wheels, extra, "1.0", {f"{extra.replace('-', '_')}.py": ""}))
    lines = []
    for whl in made:
        name, version = whl.name.split("-")[:2]
        lines.append(
            f"{name.replace('_', '-')}=={version} --hash=sha256:{hashlib.sha256(whl.read_bytes()).hexdigest()}"
        )
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    (wheels / f"requirements-{tag}-{platform.machine()}.txt").write_text("\n".join(lines) + "\n")
    (root / "kubeplay.json").write_text("{}")
    add_install_files(root, kube_version=KUBE_VERSION, arches=["amd64"], with_wheels=False)
    write_sha256sums(root, use_cache=False)
    return root


def test_a_second_bundle_moves_the_venv_to_its_ansible(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = {"KUBEPLAY_PYTHON": sys.executable, "KUBEPLAY_COMMAND": "status"}
    first = run_install_sh(bundle(tmp_path / "v2.30", "2.17.3", extra="only-in-old"), venv, **env)
    assert first.returncode == 0, first.stderr
    assert "ansible-core 2.17.3" in first.stdout and "only-in-old" in first.stdout

    second = run_install_sh(bundle(tmp_path / "v2.31", "2.18.0"), venv, **env)
    assert second.returncode == 0, second.stderr
    assert f"creating {venv}" in second.stderr
    assert "ansible-core 2.18.0" in second.stdout
    assert "only-in-old" not in second.stdout, "the old wheel set is cleared, not layered under the new one"

    same = run_install_sh(tmp_path / "v2.31", venv, **env)
    assert same.returncode == 0 and "creating" not in same.stderr and "ansible-core 2.18.0" in same.stdout


def test_a_delta_takes_the_wheels_it_does_not_carry_from_the_served_versions(tmp_path: Path) -> None:
    """The delta carries only its changed kubeplay wheel and requirements; pip and ansible-core come from the
    served version that has them with the listed digest, although an older kubeplay wheel of the same file
    name is served too."""
    from tests.served_fixture import digests, make_delta

    state = tmp_path / "state"
    old = bundle(tmp_path / "old", "2.17.3")
    served_wheels = state / "served/versions" / ("a" * 64) / "wheels"
    shutil.copytree(old / "wheels", served_wheels)
    new = bundle(tmp_path / "new", "2.17.3", extra="only-in-new")
    assert (new / "wheels/kubeplay-0.0.1-py3-none-any.whl").read_bytes() == (
        old / "wheels/kubeplay-0.0.1-py3-none-any.whl"
    ).read_bytes()
    # the same file name with other bytes in the served set must not be taken
    (served_wheels / "only_in_new-1.0-py3-none-any.whl").write_bytes(b"an older build under this name")
    delta = make_delta(new, set(digests(old).values()), ["a" * 64], tmp_path / "delta")
    carried = set(digests(delta))
    assert "wheels/only_in_new-1.0-py3-none-any.whl" in carried
    assert not any(r.startswith("wheels/pip-") or "ansible_core" in r for r in carried)
    env = {"KUBEPLAY_PYTHON": sys.executable, "KUBEPLAY_COMMAND": "status", "KUBEPLAY_STATE_DIR": str(state)}
    result = run_install_sh(delta, tmp_path / "venv", **env)
    assert result.returncode == 0, result.stderr
    assert "ansible-core 2.17.3" in result.stdout and "only-in-new" in result.stdout
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("kubeplay-wheels.*"))


def test_a_delta_on_a_node_that_serves_nothing_is_refused(tmp_path: Path) -> None:
    from tests.served_fixture import make_delta

    new = bundle(tmp_path / "new", "2.18.0")
    delta = make_delta(new, set(), ["b" * 64], tmp_path / "delta")
    env = {"KUBEPLAY_PYTHON": sys.executable, "KUBEPLAY_STATE_DIR": str(tmp_path / "state")}
    result = run_install_sh(delta, tmp_path / "venv", **env)
    assert result.returncode == 2 and "serves no earlier bundle" in result.stderr, result.stderr
