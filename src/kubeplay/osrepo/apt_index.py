"""Upstream apt indexes: InRelease verified with gpgv, Packages files checked against the Release hashes."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from debian.deb822 import Release

from kubeplay.catalog.model import Checksum
from kubeplay.errors import BadInput, FetchError
from kubeplay.fetch.http import Downloader
from kubeplay.osrepo.blobcache import Wanted, fetch_fresh, fetch_into_cache

GPGV_TIMEOUT = 120


@dataclass(frozen=True)
class AptSource:
    """One suite of one archive, as used for one OS target."""

    url: str
    suite: str
    components: tuple[str, ...]
    keyring: Path
    arches: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.url} {self.suite}"


@dataclass(frozen=True)
class ReleaseInfo:
    suite: str
    codename: str
    architectures: tuple[str, ...]
    components: tuple[str, ...]
    files: dict[str, tuple[int, str]]  # path below dists/<suite>/ -> (size, sha256)


@dataclass
class PackagesIndex:
    """One Packages file (decompressed, in the cache) for one source, component and arch."""

    source: AptSource
    component: str
    arch: str
    path: Path
    paragraphs: dict[tuple[str, str, str], str] = field(default_factory=dict)
    base_keys: set[tuple[str, str, str]] = field(default_factory=set)  # Essential: yes or Priority: required


def verify_inrelease(path: Path, keyring: Path) -> str:
    """The signed text of an InRelease file; FetchError when gpgv does not accept it with `keyring`."""
    if not keyring.is_file():
        raise BadInput(
            f"keyring {keyring} not found",
            hint="install the distro's archive keyring package (e.g. debian-archive-keyring) or set os[].keyring",
        )
    with tempfile.TemporaryDirectory(prefix="kubeplay-gpgv-") as home:
        proc = subprocess.run(
            ["gpgv", "--homedir", home, "--keyring", str(keyring), "--output", "-", str(path)],
            capture_output=True,
            timeout=GPGV_TIMEOUT,
            check=False,
        )
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise FetchError(
            f"signature of {path.name} is not valid for keyring {keyring}: {' / '.join(detail[-3:])}",
            hint="the mirror serves indexes not signed by the distro's key; check the mirror or os[].keyring",
        )
    return proc.stdout.decode("utf-8", errors="replace")


def parse_release(text: str) -> ReleaseInfo:
    """Suite, codename, arches, components and the SHA256 list of a Release file."""
    rel = Release(text)
    files: dict[str, tuple[int, str]] = {}
    for entry in rel.get("SHA256", []):
        files[entry["name"]] = (int(entry["size"]), entry["sha256"].lower())
    if not files:
        raise FetchError("Release file lists no SHA256 hashes", hint="use a mirror of a current distro release")
    return ReleaseInfo(
        suite=rel.get("Suite", ""),
        codename=rel.get("Codename", ""),
        architectures=tuple(rel.get("Architectures", "").split()),
        components=tuple(rel.get("Components", "").split()),
        files=files,
    )


def _pick_index(info: ReleaseInfo, component: str, arch: str) -> tuple[str, int, str] | None:
    for suffix in (".xz", ".gz", ""):
        name = f"{component}/binary-{arch}/Packages{suffix}"
        if name in info.files:
            size, digest = info.files[name]
            return name, size, digest
    return None


def _decompress(src: Path, dest: Path, name: str) -> Path:
    if dest.is_file():
        return dest
    data = src.read_bytes()
    if name.endswith(".xz"):
        data = lzma.decompress(data)
    elif name.endswith(".gz"):
        data = gzip.decompress(data)
    tmp = dest.with_name(dest.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return dest


_FIELD = re.compile(r"^(Package|Version|Architecture|Essential|Priority):[ \t]*(\S+)", re.M)


def read_paragraphs(index: PackagesIndex) -> None:
    """Fill index.paragraphs (keyed by name, version, arch) and index.base_keys from its Packages text."""
    text = index.path.read_text(encoding="utf-8", errors="replace")
    for para in text.split("\n\n"):
        fields = dict(_FIELD.findall(para))
        if "Package" not in fields:
            continue
        key = (fields["Package"], fields.get("Version", ""), fields.get("Architecture", ""))
        index.paragraphs.setdefault(key, para.strip("\n"))
        if fields.get("Essential") == "yes" or fields.get("Priority") == "required":
            index.base_keys.add(key)


def fetch_apt_indexes(
    sources: list[AptSource], arches: list[str], downloader: Downloader, cache: Path
) -> list[PackagesIndex]:
    """Verified Packages indexes for every source x component x arch; raise FetchError on any doubt."""
    wanted: list[tuple[AptSource, str, str, Wanted, str]] = []
    for src in sources:
        url = f"{src.url}/dists/{src.suite}/InRelease"
        tag = hashlib.sha256(url.encode()).hexdigest()[:16]
        got = fetch_fresh(downloader, url, cache / "fresh" / tag / "InRelease", f"{src.suite} InRelease")
        if got is None:
            raise FetchError(
                f"{url} does not exist",
                hint=f"check that {src.url} is an archive root holding dists/{src.suite}/",
            )
        info = parse_release(verify_inrelease(got, src.keyring))
        for arch in arches:
            if arch not in src.arches:
                continue
            if info.architectures and arch not in info.architectures:
                raise BadInput(
                    f"{src.label} has no {arch} packages",
                    hint=f"it carries: {' '.join(info.architectures)}; add a source for {arch} under os[].sources",
                )
            for comp in src.components:
                picked = _pick_index(info, comp, arch)
                if picked is None:
                    raise FetchError(
                        f"{src.label}: the Release file lists no Packages index for {comp}/{arch}",
                        hint=f"components there: {' '.join(info.components)}",
                    )
                name, size, digest = picked
                want = Wanted(f"{src.url}/dists/{src.suite}/{name}", Checksum(algorithm="sha256", hex=digest), size)
                wanted.append((src, comp, arch, want, name))
    cached = fetch_into_cache(downloader, cache, [w[3] for w in wanted], title="apt indexes")
    result = []
    for src, comp, arch, want, name in wanted:
        blob = cached[want.url]
        plain = _decompress(blob, blob.with_name(blob.name + ".Packages"), name)
        index = PackagesIndex(src, comp, arch, plain)
        read_paragraphs(index)
        result.append(index)
    return result
