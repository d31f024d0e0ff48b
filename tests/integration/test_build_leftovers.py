"""A `kubeplay build` killed (SIGKILL) while it unpacks the kubespray archive leaves a half-extracted hidden
tree in its cache; the next build into that directory removes every such tree, unless another build holds
the directory's lock (then it refuses to start and touches nothing)."""

from __future__ import annotations

import fcntl
import io
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from kubeplay.lab.upstream import UpstreamSimulator

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.build_fixture import kubeplay_with_plan, kubespray_archive, make_plan, write_spec

pytestmark = pytest.mark.integration

BIG = 48 << 20  # incompressible bytes in the archive: unpacking takes long enough to be killed in the middle


def big_kubespray_archive(directory: Path) -> tuple[Path, str]:
    """The fixture's kubespray archive plus one large member; returns (path, sha256)."""
    small, _ = kubespray_archive(directory / "small")
    buf = io.BytesIO()
    with tarfile.open(small, "r:gz") as src, tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        info = tarfile.TarInfo(f"{src.getmembers()[0].name.split('/')[0]}/contrib/big.bin")
        info.size, info.mtime, info.mode = BIG, 1700000000, 0o644
        dst.addfile(info, io.BytesIO(os.urandom(BIG)))
    path = directory / "kubespray-v2.99.0.tar.gz"
    path.write_bytes(buf.getvalue())
    return path, subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout[:64]


def staging_trees(cache: Path) -> list[Path]:
    return sorted(p for p in cache.glob(".*-*") if p.is_dir()) if cache.is_dir() else []


def test_trees_left_by_builds_killed_while_unpacking_are_removed_by_the_next_build(
    upstream: UpstreamSimulator, tmp_path: Path
) -> None:
    archive, sha = big_kubespray_archive(tmp_path / "src")
    spec = write_spec(tmp_path, upstream, str(archive), sha, mirrors={})
    out = tmp_path / "b"
    cache = out / ".kubeplay-build/cache/kubespray"
    plan = make_plan([], [])
    left: list[Path] = []
    for _kill in range(2):
        proc = kubeplay_with_plan(plan, tmp_path, "--quiet", "build", str(spec), "-o", str(out))
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if [p for p in staging_trees(cache) if p not in left]:
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, "the build finished unpacking before it could be killed"
        now = staging_trees(cache)
        assert len(now) == 1 and now != left  # the earlier kill's tree was removed; this kill left its own
        left = now
        assert not (cache / sha / ".complete").exists()

    rerun = kubeplay_with_plan(plan, tmp_path, "--quiet", "build", str(spec), "-o", str(out))
    _stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert staging_trees(cache) == []
    assert (cache / sha / ".complete").is_file()
    assert (out / "kubespray/contrib/big.bin").stat().st_size == BIG


def test_a_build_refused_by_the_lock_leaves_the_cache_alone(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    archive, sha = kubespray_archive(tmp_path / "src")
    spec = write_spec(tmp_path, upstream, str(archive), sha, mirrors={})
    out = tmp_path / "b"
    cache = out / ".kubeplay-build/cache/kubespray"
    cache.mkdir(parents=True)
    live = Path(tempfile.mkdtemp(dir=cache, prefix=f".{sha[:12]}-"))  # as a live build's extraction names it
    (live / "half.yml").write_text("kube_version: 1.31\n")
    with (out / ".kubeplay-build/lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the live build's lock
        proc = kubeplay_with_plan(make_plan([], []), tmp_path, "--quiet", "build", str(spec), "-o", str(out))
        _stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "another kubeplay build is writing this bundle" in " ".join(stderr.split())
    assert (live / "half.yml").is_file()
