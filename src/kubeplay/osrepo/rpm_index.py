"""Upstream rpm repo metadata: repomd.xml (signature checked when a key is given), then primary,
modules and comps, each checked against the checksum repomd.xml lists."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import zstandard

from kubeplay.catalog.model import Checksum
from kubeplay.errors import BadInput, FetchError
from kubeplay.fetch.http import Downloader
from kubeplay.osrepo.blobcache import Wanted, fetch_fresh, fetch_into_cache

REPO_NS = "{http://linux.duke.edu/metadata/repo}"
WANTED_TYPES = ("primary", "modules", "group")
GPGV_TIMEOUT = 120


@dataclass(frozen=True)
class RpmSource:
    """One upstream repo for one basearch."""

    name: str
    url: str  # baseurl with $basearch/$releasever filled in
    basearch: str
    keyring: Path | None = None


@dataclass(frozen=True)
class RepomdRecord:
    type: str
    href: str
    checksum: Checksum
    size: int | None


@dataclass
class RpmRepoIndex:
    source: RpmSource
    primary: Path  # decompressed primary.xml
    modules: Path | None = None  # decompressed modules.yaml
    comps: Path | None = None  # decompressed comps (group) xml


def parse_repomd(data: bytes, where: str) -> dict[str, RepomdRecord]:
    """The records of repomd.xml by type; FetchError when it is not repomd or uses an unknown checksum."""
    try:
        root = ET.fromstring(data)  # noqa: S314 - repomd.xml is checked by signature or TLS; no DTDs expanded
    except ET.ParseError as exc:
        raise FetchError(f"{where}: repomd.xml is not XML ({exc})", hint="check the repo URL") from exc
    records: dict[str, RepomdRecord] = {}
    for data_el in root.findall(f"{REPO_NS}data"):
        rtype = data_el.get("type", "")
        loc = data_el.find(f"{REPO_NS}location")
        chk = data_el.find(f"{REPO_NS}checksum")
        if loc is None or chk is None or chk.text is None:
            continue
        algo = chk.get("type", "").lower().replace("sha-", "sha")
        if algo not in ("sha256", "sha512"):
            if rtype in WANTED_TYPES:
                raise FetchError(f"{where}: {rtype} uses checksum {algo!r}", hint="kubeplay needs sha256 or sha512")
            continue
        size_el = data_el.find(f"{REPO_NS}size")
        records[rtype] = RepomdRecord(
            rtype,
            loc.get("href", ""),
            Checksum(algorithm=algo, hex=chk.text.strip().lower()),  # type: ignore[arg-type]
            int(size_el.text) if size_el is not None and size_el.text else None,
        )
    if "primary" not in records:
        raise FetchError(f"{where}: repomd.xml lists no primary metadata", hint="check the repo URL")
    return records


def verify_repomd(repomd: Path, signature: Path, keyring: Path) -> None:
    """FetchError unless `signature` is a valid detached signature of repomd.xml by a key in `keyring`."""
    with tempfile.TemporaryDirectory(prefix="kubeplay-gpgv-") as home:
        proc = subprocess.run(
            ["gpgv", "--homedir", home, "--keyring", str(keyring), str(signature), str(repomd)],
            capture_output=True,
            timeout=GPGV_TIMEOUT,
            check=False,
        )
    if proc.returncode != 0:
        raise FetchError(
            f"signature of {repomd} is not valid for keyring {keyring}",
            hint="the repo is not signed by that key; check the mirror or os[].keyring",
        )


def decompress(src: Path, href: str) -> bytes:
    data = src.read_bytes()
    if href.endswith(".gz"):
        return gzip.decompress(data)
    if href.endswith(".xz"):
        return lzma.decompress(data)
    if href.endswith(".zst"):
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if href.endswith(".bz2"):
        import bz2  # noqa: PLC0415 - rare in practice

        return bz2.decompress(data)
    return data


def _plain(blob: Path, href: str) -> Path:
    dest = blob.with_name(blob.name + ".plain")
    if not dest.is_file():
        tmp = dest.with_name(dest.name + ".part")
        tmp.write_bytes(decompress(blob, href))
        tmp.replace(dest)
    return dest


def fetch_rpm_indexes(sources: list[RpmSource], downloader: Downloader, cache: Path) -> list[RpmRepoIndex]:
    """Verified metadata of every source; FetchError on an unreachable repo, a bad signature or a bad digest."""
    pending: list[tuple[RpmSource, dict[str, RepomdRecord]]] = []
    for src in sources:
        url = f"{src.url}/repodata/repomd.xml"
        tag = hashlib.sha256(url.encode()).hexdigest()[:16]
        fresh = cache / "fresh" / tag
        got = fetch_fresh(downloader, url, fresh / "repomd.xml", f"{src.name} repomd.xml")
        if got is None:
            raise FetchError(f"{url} does not exist", hint=f"check that {src.url} is an rpm repo (has repodata/)")
        if src.keyring is not None:
            if not src.keyring.is_file():
                raise BadInput(f"keyring {src.keyring} not found", hint="fix os[].keyring in bundle.yaml")
            sig = fetch_fresh(downloader, url + ".asc", fresh / "repomd.xml.asc", f"{src.name} repomd.xml.asc")
            if sig is not None:
                verify_repomd(got, sig, src.keyring)
        pending.append((src, parse_repomd(got.read_bytes(), url)))
    wanted = [
        Wanted(f"{src.url}/{rec.href}", rec.checksum, rec.size, label=f"{src.name} {rec.type}")
        for src, recs in pending
        for rec in recs.values()
        if rec.type in WANTED_TYPES
    ]
    cached = fetch_into_cache(downloader, cache, wanted, title="rpm metadata")
    result = []
    for src, recs in pending:

        def plain(rtype: str, src: RpmSource = src, recs: dict[str, RepomdRecord] = recs) -> Path | None:
            rec = recs.get(rtype)
            return _plain(cached[f"{src.url}/{rec.href}"], rec.href) if rec else None

        primary = plain("primary")
        assert primary is not None  # parse_repomd guarantees a primary record
        result.append(RpmRepoIndex(src, primary, plain("modules"), plain("group")))
    return result
