"""Write one signed apt repository: dists/<codename>/main/binary-<arch>/Packages[.gz|.xz], Release, pool/."""

from __future__ import annotations

import gzip
import hashlib
import lzma
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from debian.deb822 import Packages, Release

from kubeplay.osrepo.signing import BundleSigner

COMPONENT = "main"


@dataclass(frozen=True)
class AptRepoContent:
    """What goes into one repo: for each arch, the upstream Packages paragraphs of its packages."""

    distro: str
    release: str
    codename: str
    paragraphs: dict[str, list[str]]  # arch -> paragraphs (Filename is the pool path, kept from upstream)


def _packages_text(paragraphs: list[str]) -> bytes:
    """Packages file text, sorted by name then version, each paragraph normalized through python-debian."""
    parsed = [Packages(p) for p in paragraphs]
    parsed.sort(key=lambda p: (p["Package"], p["Version"], p["Architecture"]))
    seen: set[tuple[str, str, str]] = set()
    chunks = []
    for p in parsed:
        key = (p["Package"], p["Version"], p["Architecture"])
        if key not in seen:
            seen.add(key)
            chunks.append(p.dump())
    return "\n".join(chunks).encode()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_apt_repo(root: Path, content: AptRepoContent, signer: BundleSigner, by_hash: bool = False) -> Path:
    """Write dists/ under root (pool/ must already hold the files); sign Release. Returns the Release path.

    `by_hash`: also write each index under by-hash/SHA256/<digest> and say `Acquire-By-Hash: yes`, so a
    client that read the old InRelease still finds the indexes it names while a new set is written
    (the deploy node re-indexes repos that nodes are using)."""
    dist = root / "dists" / content.codename
    index_files: dict[str, bytes] = {}
    for arch, paras in sorted(content.paragraphs.items()):
        plain = _packages_text(paras)
        base = f"{COMPONENT}/binary-{arch}/Packages"
        index_files[base] = plain
        index_files[base + ".gz"] = gzip.compress(plain, compresslevel=9, mtime=0)
        index_files[base + ".xz"] = lzma.compress(plain)
    if by_hash:
        for name, data in index_files.items():
            by = dist / name.rsplit("/", 1)[0] / "by-hash" / "SHA256" / hashlib.sha256(data).hexdigest()
            if not by.exists():
                _write(by, data)
    for name, data in index_files.items():
        _write(dist / name, data)
    release = Release()
    release["Origin"] = "kubeplay"
    release["Label"] = f"kubeplay {content.distro} {content.release}"
    release["Suite"] = content.codename
    release["Codename"] = content.codename
    release["Version"] = content.release
    release["Date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S UTC")
    release["Architectures"] = " ".join(sorted(content.paragraphs))
    release["Components"] = COMPONENT
    release["Description"] = f"offline {content.distro} {content.release} packages bundled by kubeplay"
    if by_hash:
        release["Acquire-By-Hash"] = "yes"
    for algo, field, key in (
        ("md5", "MD5Sum", "md5sum"),
        ("sha256", "SHA256", "sha256"),
        ("sha512", "SHA512", "sha512"),
    ):
        release[field] = [  # type: ignore[assignment]
            {key: hashlib.new(algo, data).hexdigest(), "size": str(len(data)), "name": name}
            for name, data in sorted(index_files.items())
        ]
    release_path = dist / "Release"
    _write(release_path, release.dump().encode())
    signer.clearsign(release_path, dist / "InRelease")
    signer.detach_sign(release_path, dist / "Release.gpg")
    return release_path
