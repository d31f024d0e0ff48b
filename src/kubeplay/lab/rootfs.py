"""Lab node root filesystems: one Debian tree built with mmdebstrap, cached, copied per node.

The cache holds `rootfs-<key>/` (what mmdebstrap produced as `rootfs-<key>.tar`, extracted once, the tar
then deleted) and `rootfs-<key>.lock` (its flock; its mtime says when a lab last used it); the key is a
hash of everything that shapes the tree (suite, arch, variant, packages), never the mirror.
Each node gets `cp -a` of the extracted tree (about a second) on the same filesystem as its state, so
containerd and friends later see a plain directory, not an overlay they cannot nest.

Inside a node, apt has no sources at all: the offline bundle's repository is the only one it will ever get.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kubeplay.errors import CacheBusy, RootfsError
from kubeplay.state import input_hash

# What kubespray's bootstrap_os and Ansible need before the bundle repo exists: python3 (Ansible),
# sudo (become), python3-apt (the apt module), systemd as PID 1, sshd. Everything else kubespray
# installs (curl, chrony, containerd, ...) must come from the offline bundle repository.
BASE_PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "iproute2",
    "ca-certificates",
    "sudo",
)
ROOTFS_FORMAT = 2  # bump when the customisation below changes what a cached tree contains
_BUILD_TIMEOUT = 1800
_COPY_TIMEOUT = 600
_DPKG_PATH_RULES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/info/*",
)
_SOURCES_FILES = (Path("/etc/apt/sources.list.d"), Path("/etc/apt/sources.list"))


@dataclass(frozen=True)
class RootfsSpec:
    """What a lab node's root filesystem contains."""

    suite: str = "bookworm"
    arch: str = "amd64"
    # "required": what a minimal Debian install has (Priority: required), the baseline the OS repo assumes
    variant: str = "required"
    packages: tuple[str, ...] = BASE_PACKAGES
    extra_packages: tuple[str, ...] = field(default_factory=tuple)

    def key(self) -> str:
        """The cache key: a short hash of every input that shapes the tree."""
        return input_hash(
            {
                "suite": self.suite,
                "arch": self.arch,
                "variant": self.variant,
                "packages": sorted({*self.packages, *self.extra_packages}),
                "format": ROOTFS_FORMAT,
            }
        )[:16]


def parse_apt_sources(text: str, deb822: bool) -> list[tuple[str, list[str]]]:
    """Return (uri, suites) pairs of `deb` entries in an apt sources file (deb822 or one-line format)."""
    entries: list[tuple[str, list[str]]] = []
    if deb822:
        for para in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            for line in para.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
                continue
            suites = fields.get("suites", "").split()
            entries.extend((uri, suites) for uri in fields.get("uris", "").split())
        return entries
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            entries.append((words[1], [words[2]]))
    return entries


def debian_mirror(suite: str) -> str:
    """The Debian mirror URI this machine's apt uses for `suite`, read from its apt sources at run time."""
    for base in _SOURCES_FILES:
        files = sorted(base.glob("*.sources")) + sorted(base.glob("*.list")) if base.is_dir() else [base]
        for path in files:
            if not path.is_file():
                continue
            for uri, suites in parse_apt_sources(path.read_text(encoding="utf-8"), path.suffix == ".sources"):
                if suite in suites:
                    return uri
    raise RootfsError(
        f"no apt source for suite {suite!r} in /etc/apt/sources.list.d or /etc/apt/sources.list",
        hint=f"configure a Debian mirror for {suite} in apt's sources, as `apt-get update` would use",
    )


def entry_paths(cache_dir: Path, key: str) -> tuple[Path, Path, Path]:
    """(extracted tree, tarball, lock file) of the cache entry `key`."""
    return cache_dir / f"rootfs-{key}", cache_dir / f"rootfs-{key}.tar", cache_dir / f"rootfs-{key}.lock"


@contextmanager
def entry_lock(path: Path, *, shared: bool = False, wait: bool = True) -> Iterator[None]:
    """Hold flock on the lock file `path` (shared: readers copying the tree; exclusive: build or prune).

    Concurrent `lab up` runs (parallel test sessions) share one cache: one builds, the others wait.
    Raises CacheBusy when `wait` is False and someone else holds it. `lab cache prune` deletes lock files,
    so a lock taken on a file that was unlinked meanwhile is retaken on the one now at `path`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
    while True:
        fh = path.open("a")
        try:
            try:
                fcntl.flock(fh, mode)
            except BlockingIOError as exc:
                raise CacheBusy(f"{path} is locked by another kubeplay process") from exc
            try:
                same = os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
                return
            fcntl.flock(fh, fcntl.LOCK_UN)
        finally:
            fh.close()


def _mmdebstrap_argv(spec: RootfsSpec, mirror: str, target: Path) -> list[str]:
    packages = ",".join(sorted({*spec.packages, *spec.extra_packages}))
    return [
        "mmdebstrap",
        "--format=tar",
        f"--variant={spec.variant}",
        f"--architectures={spec.arch}",
        f"--include={packages}",
        # Docs, man pages and translations are a quarter of the tree and every node copies it; the
        # rule stays in the node's dpkg config, so packages installed later from the bundle skip them too.
        *(f"--dpkgopt={rule}" for rule in _DPKG_PATH_RULES),
        # No apt sources, no host keys, no machine id in the shared tree: each node gets its own later.
        '--customize-hook=rm -f "$1"/etc/apt/sources.list "$1"/etc/apt/sources.list.d/*',
        '--customize-hook=rm -f "$1"/etc/ssh/ssh_host_*',
        '--customize-hook=: > "$1"/etc/machine-id',
        spec.suite,
        str(target),
        f"deb {mirror} {spec.suite} main",
    ]


def ensure_base_tree(spec: RootfsSpec, cache_dir: Path) -> tuple[Path, bool]:
    """Return (extracted base tree, whether it was built now); build and cache it if missing.

    The tarball mmdebstrap writes is only an intermediate: it is deleted once extracted (nothing else reads
    it), so an entry costs one tree on disk, not two.
    """
    key = spec.key()
    tree, tarball, lock = entry_paths(cache_dir, key)
    with entry_lock(lock):
        if tree.is_dir():
            return tree, False
        built = False
        if not tarball.is_file():
            part = tarball.with_suffix(".tar.part")
            part.unlink(missing_ok=True)
            mirror = debian_mirror(spec.suite)
            _run(_mmdebstrap_argv(spec, mirror, part), _BUILD_TIMEOUT, "mmdebstrap")
            os.replace(part, tarball)
            built = True
        staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".rootfs-{key}."))
        try:
            _run(["tar", "-C", str(staging), "--numeric-owner", "-xpf", str(tarball)], _COPY_TIMEOUT, "tar")
            os.chmod(staging, 0o755)  # noqa: S103 - a root filesystem's "/" is world-readable
            os.replace(staging, tree)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        tarball.unlink()
        return tree, built


@contextmanager
def base_tree(spec: RootfsSpec, cache_dir: Path) -> Iterator[tuple[Path, bool]]:
    """The base tree (built if missing) as (tree, built now), held under a shared lock inside the block.

    Copy node roots from it inside the block: `lab cache prune` takes the entry's lock exclusively and
    skips a busy entry, so it never removes a tree while it is being copied. Marks the entry as just used.
    """
    tree, _, lock = entry_paths(cache_dir, spec.key())
    built = False
    for _ in range(3):
        with entry_lock(lock, shared=True):
            if tree.is_dir():
                os.utime(lock)  # "last used", for `lab cache prune`
                yield tree, built
                return
        # Missing (or pruned between the build and this shared lock): build it under the exclusive lock.
        built = ensure_base_tree(spec, cache_dir)[1] or built
    raise RootfsError(f"rootfs cache entry {tree} disappeared three times while lab up wanted it")


def copy_tree(base: Path, dest: Path) -> None:
    """Copy the base tree to `dest` (which must not exist), keeping owners, modes, links and xattrs."""
    if dest.exists():
        raise RootfsError(f"node rootfs {dest} already exists", hint="run `kubeplay lab down` for that lab first")
    _run(["cp", "-a", "--", str(base), str(dest)], _COPY_TIMEOUT, "cp")


@dataclass(frozen=True)
class NodeIdentity:
    """What makes one node's tree its own."""

    hostname: str
    authorized_key: str
    hosts: tuple[tuple[str, str], ...]  # (ip, hostname) of every lab node


def personalise(root: Path, ident: NodeIdentity) -> str:
    """Give the copied tree its own hostname, machine id, host keys and root's authorized key.

    Returns the node's ed25519 host public key (for the lab's known_hosts file).
    """
    etc = root / "etc"
    (etc / "hostname").write_text(ident.hostname + "\n", encoding="utf-8")
    (etc / "machine-id").write_text(uuid.uuid4().hex + "\n", encoding="utf-8")
    lines = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{ident.hostname}", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{ip}\t{name}" for ip, name in ident.hosts]
    (etc / "hosts").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # An air-gapped site has its own DNS; the lab names the first node (the deploy node) as the resolver,
    # as an operator would, so kubespray's "resolv.conf has a nameserver" check holds. Nothing answers on
    # port 53 there: lookups of lab names come from /etc/hosts, anything else fails fast.
    resolv = etc / "resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    nameserver = f"nameserver {ident.hosts[0][0]}\n" if ident.hosts else ""
    resolv.write_text(
        f"# kubeplay lab node: the deploy node stands in for the site's DNS\n{nameserver}", encoding="utf-8"
    )
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(ident.authorized_key.strip() + "\n", encoding="utf-8")
    keys.chmod(0o600)
    for old in (etc / "ssh").glob("ssh_host_*"):
        old.unlink()
    # One ed25519 host key (RSA generation costs seconds per node); sshd is told to load only that one.
    host_key = etc / "ssh" / "ssh_host_ed25519_key"
    argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{ident.hostname}", "-f", str(host_key)]
    _run(argv, 60, "ssh-keygen")
    (etc / "ssh" / "sshd_config.d" / "kubeplay-lab.conf").write_text(
        "# kubeplay lab node\nHostKey /etc/ssh/ssh_host_ed25519_key\n", encoding="utf-8"
    )
    return host_key.with_suffix(".pub").read_text(encoding="utf-8").strip()


def _run(argv: list[str], timeout: int, what: str) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise RootfsError(f"{what} is not installed", hint=f"apt-get install {what}") from exc
    except subprocess.TimeoutExpired as exc:
        raise RootfsError(f"{what} did not finish within {timeout}s") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise RootfsError(f"{what} failed (exit {result.returncode}):\n{tail}")
