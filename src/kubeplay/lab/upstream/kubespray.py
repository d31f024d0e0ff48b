"""A kubespray-shaped source archive whose checksum tables match the files the simulator serves.

Take a real kubespray tree (directory or GitHub-style `.tar.gz`), give each download a small deterministic
synthetic payload, rewrite its entry in roles/kubespray_defaults/vars/main/checksums.yml
(`<name>_checksums: {arch: {version: sha256:…}}`), and pack `kubespray-<X.Y.Z>/` as a reproducible .tar.gz.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import lzma
import os
import random
import re
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from kubeplay.catalog.model import FileArtifact
from kubeplay.errors import BadInput

CHECKSUMS_PATH = "roles/kubespray_defaults/vars/main/checksums.yml"
_VERSION_DIR = re.compile(r"^kubespray-v?(\d+\.\d+\.\d+[^/]*)$")
_TABLE = re.compile(r"^([A-Za-z0-9_]+_checksums):\s*$")
_ARCH = re.compile(r"^  ([A-Za-z0-9_]+):\s*$")
_ENTRY = re.compile(r"^    ([^:\s]+):\s*(\S+)\s*$")


@dataclass(frozen=True)
class SyntheticDownload:
    """One file kubespray downloads, and the checksum table entry that must match it."""

    url: str
    table: str  # key in checksums.yml, e.g. kubelet_checksums
    arch: str  # amd64, arm64, … or no_arch
    version: str  # key in the table, e.g. 1.35.4 (no leading v)


@dataclass
class KubesprayArchive:
    path: Path
    sha256: str
    version: str  # X.Y.Z
    top_dir: str  # kubespray-X.Y.Z
    files: dict[str, str] = field(default_factory=dict)  # url -> sha256 hex of the served payload
    url: str = ""  # where the simulator serves the archive (GitHub's tag archive URL)


# -- payloads --------------------------------------------------------------------------------------


def _stand_in_script(name: str, url: str, size: int) -> bytes:
    head = (
        f"#!/bin/sh\n# kubeplay lab stand-in for {url}\n"
        f'echo "{name} (kubeplay lab stand-in; not the real binary)"\nexit 0\n'
    ).encode()
    filler = base64.b64encode(random.Random(url).randbytes(max(size - len(head), 0) * 3 // 4 + 3))
    lines = b"\n".join(b"# " + filler[i : i + 76] for i in range(0, len(filler), 76))
    return (head + lines)[: max(size, len(head))] + b"\n"


def _archive_members(url: str) -> list[str]:
    """Plausible member paths for an upstream archive (what kubespray's unarchive tasks look for)."""
    base = PurePosixPath(url).name
    stem = re.sub(r"\.(tar\.gz|tgz|tar\.xz)$", "", base)
    if base.startswith("etcd-"):
        return [f"{stem}/etcd", f"{stem}/etcdctl", f"{stem}/etcdutl"]
    if base.startswith("cni-plugins-"):
        return ["./bridge", "./host-local", "./loopback", "./portmap", "./bandwidth"]
    if base.startswith("containerd-"):
        return ["bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr"]
    if base.startswith("helm-"):
        arch_dir = stem.removeprefix("helm-").split("-", 1)[-1]
        return [f"{arch_dir}/helm"]
    if base.startswith(("crictl-", "nerdctl-", "cilium-")):
        return [base.split("-", 1)[0]]
    if base.startswith("cri-o."):
        return ["cri-o/bin/crio", "cri-o/bin/pinns"]
    return [f"{stem}/{stem.split('-', 1)[0]}"]


def synthetic_payload(url: str, size: int = 8 * 1024) -> bytes:
    """Deterministic bytes for `url`: a real gzip'd (or xz) tar for archives, YAML for manifests, else a script."""
    name = PurePosixPath(url).name
    if name.endswith((".tar.gz", ".tgz", ".tar.xz")):
        raw = io.BytesIO()
        members = _archive_members(url)
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for member in members:
                data = _stand_in_script(PurePosixPath(member).name, f"{url}#{member}", size // len(members))
                info = tarfile.TarInfo(member)
                info.size, info.mode, info.mtime = len(data), 0o755, 0
                tar.addfile(info, io.BytesIO(data))
        if name.endswith(".tar.xz"):
            return lzma.compress(raw.getvalue())
        return gzip.compress(raw.getvalue(), mtime=0)
    if name.endswith((".yaml", ".yml")):
        body = f"# kubeplay lab stand-in for {url}\napiVersion: v1\nkind: List\nitems: []\n"
        return body.encode()
    return _stand_in_script(name, url, size)


# -- checksums.yml ---------------------------------------------------------------------------------


def checksum_entries(text: str) -> dict[tuple[str, str, str], str]:
    """{(table, arch, version): value} for every entry of a checksums.yml text."""
    entries: dict[tuple[str, str, str], str] = {}
    table: str | None = None
    arch: str | None = None
    for original in text.splitlines():
        line = original
        if m := _TABLE.match(line):
            table, arch = m.group(1), None
        elif (m := _ARCH.match(line)) and table:
            arch = m.group(1)
        elif (m := _ENTRY.match(line)) and table and arch:
            entries[(table, arch, m.group(1).strip("'\""))] = m.group(2)
    return entries


def rewrite_checksums(text: str, updates: dict[tuple[str, str, str], str]) -> str:
    """Set each (table, arch, version) to `sha256:<hex>`, keeping the file's layout and order.

    A version missing from its arch block is appended at the block's end (so kubespray's default, the
    first key, does not change); a missing arch or table is appended too.
    """
    pending = dict(updates)
    style = "sha256:" if "sha256:" in text or not text.strip() else ""
    out: list[str] = []
    table: str | None = None
    arch: str | None = None

    def flush_arch() -> None:
        for key in [k for k in pending if k[0] == table and k[1] == arch]:
            out.append(f"    {key[2]}: {style}{pending.pop(key)}")

    def flush_table() -> None:
        flush_arch()
        for arch_name in sorted({k[1] for k in pending if k[0] == table}):
            out.append(f"  {arch_name}:")
            for key in [k for k in pending if k[0] == table and k[1] == arch_name]:
                out.append(f"    {key[2]}: {style}{pending.pop(key)}")

    for original in text.splitlines():
        line = original
        if m := _TABLE.match(line):
            flush_table()
            table, arch = m.group(1), None
        elif (m := _ARCH.match(line)) and table:
            flush_arch()
            arch = m.group(1)
        elif (m := _ENTRY.match(line)) and table and arch:
            key = (table, arch, m.group(1).strip("'\""))
            if key in pending:
                line = f"    {m.group(1)}: {style}{pending.pop(key)}"
        out.append(line)
    flush_table()
    for table_name in sorted({k[0] for k in pending}):
        out.append(f"{table_name}:")
        table, arch = table_name, None
        flush_table()
    return "\n".join(out) + "\n"


def downloads_from_plan(checksums_text: str, files: Iterable[FileArtifact]) -> list[SyntheticDownload]:
    """Map plan files to checksum-table entries by their current sha256 (and version when several match)."""
    by_digest: dict[str, list[tuple[str, str, str]]] = {}
    for key, value in checksum_entries(checksums_text).items():
        by_digest.setdefault(value.removeprefix("sha256:").lower(), []).append(key)
    result: list[SyntheticDownload] = []
    for f in files:
        if f.checksum is None or f.checksum.algorithm != "sha256":
            continue
        candidates = by_digest.get(f.checksum.hex.lower(), [])
        arch = "no_arch" if f.arch in ("noarch", "no_arch") else f.arch
        exact = [k for k in candidates if k[1] == arch and (f.version is None or k[2] == f.version.lstrip("v"))]
        for table, table_arch, version in exact or [k for k in candidates if k[1] == arch]:
            result.append(SyntheticDownload(url=f.url, table=table, arch=table_arch, version=version))
    return result


def read_checksums_text(source: Path) -> str:
    """checksums.yml of a kubespray directory or GitHub-style archive."""
    if source.is_dir():
        return (source / CHECKSUMS_PATH).read_text()
    with tarfile.open(source) as tar:
        for member in tar.getmembers():
            if member.name.split("/", 1)[-1] == CHECKSUMS_PATH:
                fh = tar.extractfile(member)
                if fh is not None:
                    return fh.read().decode()
    raise BadInput(f"{source} has no {CHECKSUMS_PATH}; is it a kubespray tree?")


# -- the archive -----------------------------------------------------------------------------------


def _top_dir(source: Path) -> str:
    """The kubespray-<X.Y.Z> directory name of a tree or archive."""
    if source.is_dir():
        return source.name
    if not source.is_file():
        raise BadInput(f"kubespray source {source} is neither a directory nor a file")
    with tarfile.open(source) as tar:
        tops = {m.name.split("/", 1)[0] for m in tar.getmembers()}
    if len(tops) != 1:
        raise BadInput(f"{source} should hold one top-level directory kubespray-<X.Y.Z>/, found {len(tops)}")
    return tops.pop()


def _walk(tree: Path) -> list[Path]:
    """Every entry below `tree`, sorted, symlinks kept as links (never followed)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(tree, followlinks=False):
        found.extend(Path(dirpath) / name for name in (*dirnames, *filenames))
    return sorted(found)


def _binary_opener(path: Path) -> Callable[[], IO[bytes]]:
    def open_binary() -> IO[bytes]:
        return path.open("rb")

    return open_binary


def _copy_entries(source: Path, out: tarfile.TarFile, top: str, replaced: dict[str, bytes]) -> None:
    """Copy every entry of a tree or archive under `top/`, with `replaced` contents by relative path."""

    def add(info: tarfile.TarInfo, rel: str, read: Callable[[], IO[bytes] | None]) -> None:
        info.name = top + (f"/{rel}" if rel else "")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        if rel in replaced and info.isfile():
            info.size = len(replaced[rel])
            out.addfile(info, io.BytesIO(replaced[rel]))
        elif info.isfile():
            fh = read()
            if fh is None:
                raise BadInput(f"{source}: cannot read {rel}")
            with fh:
                out.addfile(info, fh)
        else:
            out.addfile(info)

    if source.is_dir():
        for path in [source, *_walk(source)]:
            rel = path.relative_to(source).as_posix() if path != source else ""
            info = out.gettarinfo(str(path), arcname=rel or ".")
            add(info, rel, _binary_opener(path))
        return
    with tarfile.open(source) as tar:
        for member in tar.getmembers():
            rel = member.name.split("/", 1)[1].rstrip("/") if "/" in member.name.rstrip("/") else ""
            add(member, rel, functools.partial(tar.extractfile, member))


def build_kubespray_archive(
    source: Path, out_dir: Path, downloads: Iterable[SyntheticDownload], payloads: dict[str, bytes]
) -> KubesprayArchive:
    """Rewrite the checksum entries of `downloads` to their payloads' sha256 and pack the tree.

    Returns the archive (out_dir/kubespray-<X.Y.Z>.tar.gz, reproducible) with its sha256; raises BadInput
    for a tree without checksums.yml or a download without a payload.
    """
    name = _top_dir(source)
    m = _VERSION_DIR.match(name)
    if not m:
        raise BadInput(f"cannot tell the kubespray version from {name!r}; expected kubespray-<X.Y.Z>")
    version = m.group(1)
    updates: dict[tuple[str, str, str], str] = {}
    files: dict[str, str] = {}
    for d in downloads:
        if d.url not in payloads:
            raise BadInput(f"no payload for {d.url}")
        files[d.url] = hashlib.sha256(payloads[d.url]).hexdigest()
        updates[(d.table, d.arch, d.version)] = files[d.url]
    checksums = rewrite_checksums(read_checksums_text(source), updates).encode()
    top = f"kubespray-{version}"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{top}.tar.gz"
    part = target.with_name(f".{target.name}.part")
    digest = hashlib.sha256()
    with (
        part.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        _copy_entries(source, tar, top, {CHECKSUMS_PATH: checksums})
    with part.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    part.replace(target)
    return KubesprayArchive(path=target, sha256=digest.hexdigest(), version=version, top_dir=top, files=files)
