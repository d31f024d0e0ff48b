"""The kubeplay_files Ansible module (node prep's one file-writing run), run as Ansible runs a module."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubeplay.deploy.steps import PLAYBOOKS

MODULE = PLAYBOOKS / "library" / "kubeplay_files.py"


def run_module(tmp_path: Path, files: list[dict[str, Any]], *, check_mode: bool = False) -> dict[str, Any]:
    """Run the module the way Ansible's debug path does: arguments in a JSON file given as argv[1]."""
    args = {"ANSIBLE_MODULE_ARGS": {"files": files, "_ansible_check_mode": check_mode}}
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps(args))
    proc = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, timeout=60, check=False
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_writes_text_and_binary_files_with_parents_and_modes(tmp_path: Path) -> None:
    key = bytes(range(256))  # a binary keyring (.gpg) must arrive byte for byte
    repo = tmp_path / "etc/apt/sources.list.d/kubeplay-node.sources"
    keyring = tmp_path / "etc/kubeplay-node/kubeplay-archive-keyring.gpg"
    result = run_module(
        tmp_path,
        [
            {"path": str(repo), "content": "Types: deb\nURIs: http://10.0.0.1/repos\n"},
            {"path": str(keyring), "content_b64": base64.b64encode(key).decode(), "mode": "0600"},
        ],
    )
    assert result["changed"] is True, result
    assert result["changed_paths"] == [str(repo), str(keyring)]
    assert repo.read_text() == "Types: deb\nURIs: http://10.0.0.1/repos\n"
    assert keyring.read_bytes() == key
    assert stat.S_IMODE(repo.stat().st_mode) == 0o644
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600
    assert stat.S_IMODE(keyring.parent.stat().st_mode) == 0o755
    assert not list(keyring.parent.glob(".kubeplay-*")), "no temporary file left behind"


def test_second_run_changes_nothing_and_reports_only_what_differs(tmp_path: Path) -> None:
    a, b = tmp_path / "a.conf", tmp_path / "b.conf"
    files = [{"path": str(a), "content": "one\n"}, {"path": str(b), "content": "two\n"}]
    run_module(tmp_path, files)
    before = a.stat().st_ino
    again = run_module(tmp_path, files)
    assert again["changed"] is False and again["changed_paths"] == [], again
    assert a.stat().st_ino == before, "an unchanged file is not rewritten"

    b.write_text("edited by hand\n")
    a.chmod(0o600)
    third = run_module(tmp_path, files)
    assert sorted(third["changed_paths"]) == [str(a), str(b)], third
    assert b.read_text() == "two\n"
    assert stat.S_IMODE(a.stat().st_mode) == 0o644


def test_keep_original_keeps_the_first_original_once(tmp_path: Path) -> None:
    conf = tmp_path / "etc/chrony/chrony.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("pool 2.debian.pool.ntp.org iburst\n")
    conf.chmod(0o640)
    kept = tmp_path / "etc/kubeplay-node/chrony.conf.orig"
    spec = {"path": str(conf), "content": "server 10.0.0.1 iburst\n", "keep_original": str(kept)}
    first = run_module(tmp_path, [spec])
    assert first["kept_paths"] == [str(kept)] and first["changed_paths"] == [str(conf)], first
    assert kept.read_text() == "pool 2.debian.pool.ntp.org iburst\n"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640, "the original keeps its mode"
    assert conf.read_text() == "server 10.0.0.1 iburst\n"

    # A later run with other content replaces the file but never the kept original.
    again = run_module(tmp_path, [{**spec, "content": "server 10.0.0.2 iburst\n"}])
    assert again["kept_paths"] == [] and again["changed_paths"] == [str(conf)], again
    assert kept.read_text() == "pool 2.debian.pool.ntp.org iburst\n"

    # Nothing to keep when the file did not exist.
    fresh = tmp_path / "new.conf"
    none = run_module(tmp_path, [{"path": str(fresh), "content": "x\n", "keep_original": str(tmp_path / "new.orig")}])
    assert none["kept_paths"] == [] and not (tmp_path / "new.orig").exists(), none


def test_check_mode_reports_without_writing(tmp_path: Path) -> None:
    target = tmp_path / "new/dir/file.conf"
    result = run_module(tmp_path, [{"path": str(target), "content": "x\n"}], check_mode=True)
    assert result["changed_paths"] == [str(target)], result
    assert not target.exists() and not target.parent.exists()


def test_bad_input_is_named(tmp_path: Path) -> None:
    neither = run_module(tmp_path, [{"path": str(tmp_path / "x")}])
    assert neither.get("failed") and "exactly one of content and content_b64" in neither["msg"], neither
    bad = run_module(tmp_path, [{"path": str(tmp_path / "y"), "content_b64": "not base64!"}])
    assert bad.get("failed") and str(tmp_path / "y") in bad["msg"] and "base64" in bad["msg"], bad
    assert not (tmp_path / "y").exists()
