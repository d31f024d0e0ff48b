"""The bundle's apt repo metadata and its signature, and the upstream index checks (gpgv, Release hashes)."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import shutil
import subprocess
from pathlib import Path

import pytest

from kubeplay.errors import FetchError
from kubeplay.osrepo.apt_index import parse_release, verify_inrelease
from kubeplay.osrepo.apt_repo import AptRepoContent, write_apt_repo
from kubeplay.osrepo.signing import BundleSigner

if shutil.which("gpg") is None or shutil.which("gpgv") is None:
    pytest.skip("needs gpg and gpgv", allow_module_level=True)

PARA = "Package: {n}\nVersion: 1.0\nArchitecture: {a}\nFilename: pool/main/{n}_1.0_{a}.deb\nSize: 3\nSHA256: {h}\n"


@pytest.fixture(scope="module")
def signed_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("repo")
    h = hashlib.sha256(b"deb").hexdigest()
    content = AptRepoContent(
        "debian",
        "12",
        "bookworm",
        {
            "amd64": [PARA.format(n="b", a="amd64", h=h), PARA.format(n="a", a="all", h=h)],
            "arm64": [PARA.format(n="b", a="arm64", h=h), PARA.format(n="a", a="all", h=h)],
        },
    )
    with BundleSigner() as signer:
        write_apt_repo(root, content, signer)
        key = root / "key.gpg"
        key.write_bytes(signer.public_key())
        home = signer.home
    assert not home.exists(), "the private key must not outlive the build"
    return root, key


def test_release_lists_every_index_with_matching_hashes(signed_repo: tuple[Path, Path]) -> None:
    root, _ = signed_repo
    dist = root / "dists/bookworm"
    info = parse_release((dist / "Release").read_text())
    assert info.codename == "bookworm" and info.architectures == ("amd64", "arm64") and info.components == ("main",)
    assert set(info.files) == {f"main/binary-{a}/Packages{s}" for a in ("amd64", "arm64") for s in ("", ".gz", ".xz")}
    for name, (size, digest) in info.files.items():
        data = (dist / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, digest)
    plain = (dist / "main/binary-amd64/Packages").read_bytes()
    assert gzip.decompress((dist / "main/binary-amd64/Packages.gz").read_bytes()) == plain
    assert lzma.decompress((dist / "main/binary-amd64/Packages.xz").read_bytes()) == plain
    assert plain.decode().index("Package: a") < plain.decode().index("Package: b")


def test_inrelease_and_release_gpg_verify_with_the_shipped_key(signed_repo: tuple[Path, Path], tmp_path: Path) -> None:
    root, key = signed_repo
    dist = root / "dists/bookworm"
    assert "Codename: bookworm" in verify_inrelease(dist / "InRelease", key)
    detached = subprocess.run(
        ["gpgv", "--homedir", str(tmp_path), "--keyring", str(key), str(dist / "Release.gpg"), str(dist / "Release")],
        capture_output=True,
        check=False,
    )
    assert detached.returncode == 0, detached.stderr


def test_tampered_or_foreign_signature_is_refused(signed_repo: tuple[Path, Path], tmp_path: Path) -> None:
    root, key = signed_repo
    tampered = tmp_path / "InRelease"
    tampered.write_text((root / "dists/bookworm/InRelease").read_text().replace("bookworm", "trixie", 1))
    with pytest.raises(FetchError, match="not valid"):
        verify_inrelease(tampered, key)
    with BundleSigner() as other:
        other_key = tmp_path / "other.gpg"
        other_key.write_bytes(other.public_key())
    with pytest.raises(FetchError, match="not valid"):
        verify_inrelease(root / "dists/bookworm/InRelease", other_key)
