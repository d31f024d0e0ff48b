"""`kubeplay lab` input errors as a user meets them (exit 2, a clear line, nothing touched), and
`lab cache prune` on a cache of fake entries. No root needed: no lab is booted here."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubeplay.lab import machines, record

KUBEPLAY = Path(sys.executable).parent / "kubeplay"


def kubeplay(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEPLAY_")}
    return subprocess.run([str(KUBEPLAY), *args], capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.mark.parametrize("pair", ["NOVALUE", "=value", "1BAD=x", "BAD-NAME=x"])
def test_up_refuses_a_malformed_nspawn_env(tmp_path: Path, pair: str) -> None:
    state = tmp_path / "labs"
    proc = kubeplay("lab", "up", "--state-dir", str(state), "--nspawn-env", "OK=1", "--nspawn-env", pair)
    assert proc.returncode == 2, proc.stderr
    assert f"--nspawn-env {pair!r} is not KEY=VALUE" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not state.exists()


def test_parse_env_keeps_values_verbatim() -> None:
    assert machines.parse_env(["A=1", "B=x=y", "C=", "A=2"]) == {"A": "2", "B": "x=y", "C": ""}


def fake_lab(state_root: Path, pid: int, start_time: int) -> None:
    """A lab record whose node0 process is (pid, start_time); no signal is ever sent in these tests."""
    lab_dir = state_root / "fake"
    lab_dir.mkdir(parents=True)
    rec = record.LabRecord(
        name="fake", subnet="10.213.0.0/24", bridge_ip="10.213.0.1", netns="kplab-fake", dir=str(lab_dir),
        key=str(lab_dir / "id_ed25519"), known_hosts=str(lab_dir / "known_hosts"),
        nodes=[record.NodeRecord(name="node0", ip="10.213.0.10", netns="kplab-fake-node0", link="v-node0",
                                 machine="kplab-fake-node0", root=str(lab_dir / "nodes/node0"),
                                 log=str(lab_dir / "node0.log"))],
        resources=[record.Resource(kind="process", name="kplab-fake-node0", pid=pid, start_time=start_time, done=True)],
    )  # fmt: skip
    record.save(rec)


def test_power_on_a_running_node_is_refused(tmp_path: Path) -> None:
    me = os.getpid()  # alive and verifiable by start time: it stands in for a running node
    fake_lab(tmp_path, me, machines.process_start_time(me) or 0)
    proc = kubeplay("lab", "power-on", "node0", "--state-dir", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert f"lab fake: node node0 is already running (PID {me})" in proc.stderr


def test_power_off_a_stopped_node_is_refused(tmp_path: Path) -> None:
    me = os.getpid()
    fake_lab(tmp_path, me, (machines.process_start_time(me) or 0) + 1)  # not the recorded process: stopped
    proc = kubeplay("lab", "power-off", "node0", "--cut", "--state-dir", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert "lab fake: node node0 is already powered off (stopped)" in proc.stderr
    assert "power-on node0" in proc.stderr


def test_power_off_an_unknown_node_names_the_nodes(tmp_path: Path) -> None:
    fake_lab(tmp_path, os.getpid(), 1)
    proc = kubeplay("lab", "power-off", "node7", "--name", "fake", "--state-dir", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert "no node 'node7'" in proc.stderr and "node0" in proc.stderr


def test_an_old_state_file_without_the_new_fields_still_loads(tmp_path: Path) -> None:
    fake_lab(tmp_path, os.getpid(), 1)
    path = tmp_path / "fake" / "lab.json"
    data = record.LabRecord.model_validate_json(path.read_text()).model_dump()
    for added in ("nspawn_args", "nspawn_env", "rootfs_key"):
        del data[added]
    old = record.LabRecord.model_validate(data)
    assert old.nspawn_args == [] and old.nspawn_env == {} and old.rootfs_key is None


def test_cache_prune_prints_what_it_removed_and_the_bytes_freed(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    for i, key in enumerate(("1" * 16, "2" * 16)):
        tree = cache_dir / f"rootfs-{key}"
        tree.mkdir(parents=True)
        (tree / "blob").write_bytes(b"x" * 3 * 1024 * 1024)
        lock = cache_dir / f"rootfs-{key}.lock"
        lock.touch()
        os.utime(lock, (1000.0 + i, 1000.0 + i))
    args = ("lab", "cache", "prune", "--cache-dir", str(cache_dir), "--state-dir", str(tmp_path / "labs"))
    proc = kubeplay(*args)
    assert proc.returncode == 0, proc.stderr
    assert f"removed rootfs-{'1' * 16} (3.0 MiB)" in proc.stderr
    assert f"kept rootfs-{'2' * 16}: most recently used" in proc.stderr
    assert "removed 1 entry(ies), freed 3.0 MiB" in proc.stderr
    assert not (cache_dir / f"rootfs-{'1' * 16}").exists()
    everything = kubeplay(*args, "--all")
    assert everything.returncode == 0, everything.stderr
    assert list(cache_dir.iterdir()) == []


def test_stop_of_a_container_manager_that_ignores_sigterm_kills_its_init_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stand-in for systemd-nspawn that ignores SIGTERM, with a child as its container's init: after the
    deadline both die (SIGKILL to the manager alone would leave the init running, re-parented to PID 1)."""
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    manager = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert manager.stdout is not None
    init = int(manager.stdout.readline())
    start = machines.process_start_time(manager.pid)
    init_start = machines.process_start_time(init)
    assert start is not None and init_start is not None
    monkeypatch.setattr(machines, "STOP_TIMEOUT", 0.5)
    try:
        assert machines.stop([(manager.pid, start)], {manager.pid: manager}) == []
        assert not machines.is_running(manager.pid, start)
        assert not machines.is_running(init, init_start)
    finally:
        for pid in (init, manager.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        manager.wait(timeout=10)
