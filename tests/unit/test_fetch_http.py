"""The downloader against a loopback HTTP server: verify, resume, retry, fail one without losing others."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeplay.catalog.model import Checksum
from kubeplay.console import Output
from kubeplay.fetch.http import Downloader, DownloadItem, part_path
from kubeplay.fetch.retry import RetryPolicy

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.fetch_fixture import FileServer, serve

BIG = os.urandom(3 << 20) + b"tail"
SMALL = b"small file\n"


def sha256(data: bytes) -> Checksum:
    return Checksum(algorithm="sha256", hex=hashlib.sha256(data).hexdigest())


@pytest.fixture
def server() -> Iterator[FileServer]:
    with serve({"big": BIG, "small": SMALL}) as s:
        yield s


def downloader(tmp_path: Path, *, jobs: int = 4, timeout: float = 60.0) -> Downloader:
    policy = RetryPolicy(attempts=4, base=0.01, cap=0.05, deadline=30)
    return Downloader(
        out=Output(quiet=True),
        jobs=jobs,
        progress=False,
        policy=policy,
        verified_cache=tmp_path / "verified.json",
        timeout=timeout,
    )


def test_downloads_verify_and_rerun_does_no_io(server: FileServer, tmp_path: Path) -> None:
    items = [
        DownloadItem(f"{server.url}/ok/big", tmp_path / "out" / "big", sha256(BIG), len(BIG), "big_url"),
        DownloadItem(f"{server.url}/ok/small", tmp_path / "out" / "small", sha256(SMALL), None, "small_url"),
    ]
    with downloader(tmp_path) as d:
        report = d.download_all(items)
    assert report.ok and len(report.done) == 2
    assert (tmp_path / "out" / "big").read_bytes() == BIG
    assert report.bytes_fetched == len(BIG) + len(SMALL)
    before = sum(server.hits.values())
    with downloader(tmp_path) as d:
        again = d.download_all(items)
    assert len(again.skipped) == 2 and again.bytes_fetched == 0
    assert sum(server.hits.values()) == before


def test_sha512_checksum_is_checked(server: FileServer, tmp_path: Path) -> None:
    good = Checksum(algorithm="sha512", hex=hashlib.sha512(SMALL).hexdigest())
    with downloader(tmp_path) as d:
        report = d.download_all([DownloadItem(f"{server.url}/ok/small", tmp_path / "s", good)])
    assert report.ok
    assert report.facts[tmp_path / "s"].sha256 == hashlib.sha256(SMALL).hexdigest()


def test_cut_body_resumes_with_range(server: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "big"
    with downloader(tmp_path) as d:
        report = d.download_all([DownloadItem(f"{server.url}/cut/100000/big", dest, sha256(BIG), label="v")])
    assert report.ok, report.failed
    assert dest.read_bytes() == BIG
    assert server.ranges == ["bytes=100000-"]


def test_leftover_part_from_a_killed_run_is_resumed(server: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "big"
    part_path(dest).write_bytes(BIG[:12345])
    with downloader(tmp_path) as d:
        report = d.download_all([DownloadItem(f"{server.url}/ok/big", dest, sha256(BIG))])
    assert report.ok and dest.read_bytes() == BIG
    assert report.bytes_fetched == len(BIG) - 12345
    assert not part_path(dest).exists()


def test_server_ignoring_range_still_yields_the_right_file(server: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "big"
    part_path(dest).write_bytes(BIG[:5000])
    with downloader(tmp_path) as d:
        report = d.download_all([DownloadItem(f"{server.url}/norange/big", dest, sha256(BIG))])
    assert report.ok and dest.read_bytes() == BIG


def test_503s_are_retried(server: FileServer, tmp_path: Path) -> None:
    with downloader(tmp_path) as d:
        report = d.download_all([DownloadItem(f"{server.url}/fail/2/small", tmp_path / "s", sha256(SMALL))])
    assert report.ok
    assert server.hits["/fail/2/small"] == 3


def test_retries_are_bounded(server: FileServer, tmp_path: Path) -> None:
    with downloader(tmp_path) as d:
        report = d.download_all([DownloadItem(f"{server.url}/fail/99/small", tmp_path / "s", sha256(SMALL), label="x")])
    assert len(report.failed) == 1
    assert "503" in report.failed[0].reason and "4 tries" in report.failed[0].reason
    assert server.hits["/fail/99/small"] == 4


def test_wrong_bytes_name_both_digests_and_keep_nothing(server: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "s"
    with downloader(tmp_path) as d:
        report = d.download_all([DownloadItem(f"{server.url}/corrupt/small", dest, sha256(SMALL), label="crictl")])
    (failure,) = report.failed
    assert failure.url.endswith("/corrupt/small") and failure.label == "crictl"
    assert hashlib.sha256(SMALL).hexdigest() in failure.reason
    assert hashlib.sha256(bytes(b ^ 0xFF for b in SMALL)).hexdigest() in failure.reason
    assert not dest.exists() and not part_path(dest).exists()


def test_a_404_fails_alone_and_names_its_variable(server: FileServer, tmp_path: Path) -> None:
    items = [
        DownloadItem(f"{server.url}/ok/missing", tmp_path / "m", None, label="kubeadm_download_url"),
        DownloadItem(f"{server.url}/ok/big", tmp_path / "big", sha256(BIG)),
    ]
    with downloader(tmp_path) as d:
        report = d.download_all(items)
    assert [f.label for f in report.failed] == ["kubeadm_download_url"]
    assert "404" in report.failed[0].reason
    assert (tmp_path / "big").read_bytes() == BIG


def test_not_enough_space_is_refused_before_downloading(server: FileServer, tmp_path: Path) -> None:
    from kubeplay.errors import FetchError

    huge = DownloadItem(f"{server.url}/ok/big", tmp_path / "big", sha256(BIG), size=1 << 60)
    with downloader(tmp_path) as d, pytest.raises(FetchError, match="not enough free space"):
        d.download_all([huge])
    assert sum(server.hits.values()) == 0


def test_a_part_without_a_digest_to_check_is_not_resumed(server: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "index"
    part_path(dest).write_bytes(b"stale bytes of an older version")
    with downloader(tmp_path) as d:
        report = d.download_all([DownloadItem(f"{server.url}/ok/small", dest, None)])
    assert report.ok and dest.read_bytes() == SMALL
    assert server.ranges == []


def test_large_bodies_one_after_another_on_one_worker(server: FileServer, tmp_path: Path) -> None:
    # Large bodies are read from the socket past httpx; each such connection is then dropped, never reused
    # half-read, so the next request on the same client gets a fresh connection and the right bytes.
    server.files.update({"big2": BIG[::-1], "big3": BIG[1:]})
    names = ["big", "small", "big2", "big3", "small"]
    items = [
        DownloadItem(f"{server.url}/ok/{n}", tmp_path / f"{i}-{n}", sha256(server.files[n]))
        for i, n in enumerate(names)
    ]
    with downloader(tmp_path, jobs=1) as d:
        report = d.download_all(items)
    assert report.ok, report.failed
    assert all(item.dest.read_bytes() == server.files[name] for item, name in zip(items, names, strict=True))
    assert report.bytes_fetched == sum(len(server.files[n]) for n in names)


def test_chunked_body_without_length_is_verified(server: FileServer, tmp_path: Path) -> None:
    with downloader(tmp_path) as d:
        report = d.download_all([DownloadItem(f"{server.url}/chunked/big", tmp_path / "big", sha256(BIG))])
    assert report.ok, report.failed
    assert (tmp_path / "big").read_bytes() == BIG


def test_stalled_body_times_out_and_resumes_where_it_stopped(server: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "big"
    with downloader(tmp_path, timeout=0.5) as d:
        report = d.download_all([DownloadItem(f"{server.url}/stall/1500000/big", dest, sha256(BIG))])
    assert report.ok, report.failed
    assert dest.read_bytes() == BIG
    assert server.ranges == ["bytes=1500000-"]  # every byte that arrived before the stall was kept
