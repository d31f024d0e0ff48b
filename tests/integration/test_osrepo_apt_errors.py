"""apt mirrors that must stop the build before anything is written: bad signature, unreachable, wrong arch."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.build_fixture import os_repos_quietly
from tests.conftest import serve_directory

from kubeplay.config.bundle import BundleSpec
from kubeplay.errors import BadInput, FetchError
from kubeplay.osrepo.apt_repo import AptRepoContent, write_apt_repo
from kubeplay.osrepo.signing import BundleSigner

pytestmark = [pytest.mark.integration]


@pytest.fixture
def impostor(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A well-formed bookworm archive on loopback, signed by a key that is not Debian's; yields (url, its key)."""
    root = tmp_path / "archive"
    para = "Package: socat\nVersion: 1.0\nArchitecture: amd64\nFilename: pool/s.deb\nSize: 1\nSHA256: " + "0" * 64
    key = tmp_path / "impostor.gpg"
    with BundleSigner() as signer:
        write_apt_repo(root, AptRepoContent("debian", "12", "bookworm", {"amd64": [para]}), signer)
        key.write_bytes(signer.public_key())
    for suite in ("bookworm-updates",):
        (root / "dists" / suite).symlink_to(root / "dists/bookworm")
    with serve_directory(root) as url:
        yield url, key


def _spec(mirror: str, **extra: object) -> BundleSpec:
    target = {"distro": "debian", "release": "12", "arches": ["amd64"], "mirror": mirror, **extra}
    return BundleSpec.model_validate(
        {
            "kubespray": {"version": "v2.31.0", "source": "/x"},
            "os": [target],
            "packages": {"defaults": False, "apt": ["socat"]},
        }
    )


def test_index_signed_by_another_key_stops_the_build(impostor: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = impostor
    bundle = tmp_path / "bundle"
    with pytest.raises(FetchError) as err:
        os_repos_quietly(_spec(url), bundle, tmp_path / "cache")
    assert "not valid" in err.value.message and "debian-archive-keyring" in err.value.message
    assert not (bundle / "repos").exists()


def test_the_same_archive_passes_with_its_own_keyring(impostor: tuple[str, Path], tmp_path: Path) -> None:
    url, key = impostor
    spec = _spec(url, keyring=str(key))
    with pytest.raises(FetchError) as err:  # the index verifies now; the pool file it lists is missing upstream
        os_repos_quietly(spec, tmp_path / "bundle", tmp_path / "cache", retries=1)
    assert "pool/s.deb" in err.value.message
    assert not (tmp_path / "bundle" / "repos").exists()


def test_unknown_arch_in_the_mirror_is_bad_input(impostor: tuple[str, Path], tmp_path: Path) -> None:
    url, key = impostor
    spec = _spec(url, keyring=str(key), arches=["arm64"])
    with pytest.raises(BadInput) as err:
        os_repos_quietly(spec, tmp_path / "bundle", tmp_path / "cache")
    assert "arm64" in err.value.message and "amd64" in (err.value.hint or "")


def test_unreachable_mirror(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError) as err:
        os_repos_quietly(
            _spec(f"http://127.0.0.1:{port}/debian"), tmp_path / "bundle", tmp_path / "cache", retries=1, timeout=5
        )
    assert f"127.0.0.1:{port}/debian/dists/bookworm/InRelease" in err.value.message
    assert not (tmp_path / "bundle" / "repos").exists()
