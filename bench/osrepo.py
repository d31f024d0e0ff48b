"""Benchmark: kubeplay's OS repo step vs kubespray-offline's method, Debian 12 amd64 + arm64, default list.

kubeplay: index fetch + gpgv + libsolv closure + parallel verified download + signed repo (cold cache).
peer:     `apt-get update` + `apt-get install --download-only` in an isolated apt root per arch (the method
          kubespray-offline uses), with the same minimal baseline as dpkg status, from the same mirror.
Then both package sets are checked with `apt-get install --simulate` against a repo made of that set alone.
Prints the time ratio (peer / kubeplay: above 1 means kubeplay is faster); nothing is asserted.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubeplay.config.bundle import BundleSpec
from kubeplay.console import Output
from kubeplay.errors import KubeplayError
from kubeplay.fetch.http import Downloader
from kubeplay.osrepo import build_os_repos
from kubeplay.osrepo.apt_check import AptLine, IsolatedAptRoot
from kubeplay.osrepo.apt_target import plan_apt_target
from kubeplay.osrepo.build import package_request
from kubeplay.osrepo.host_sources import host_sources_for
from kubeplay.osrepo.targets import find_target

ARCHES = ("amd64", "arm64")
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
SPEC = BundleSpec.model_validate(
    {
        "kubespray": {"version": "v2.31.0", "source": "/nonexistent"},
        "os": [{"distro": "debian", "release": "12", "arches": list(ARCHES)}],
    }
)


def flat_repo(debs: list[Path], where: Path) -> Path:
    """A trusted flat repo of `debs` (dpkg-scanpackages), only for checking that the set installs."""
    where.mkdir(parents=True)
    for deb in debs:
        shutil.copy(deb, where / deb.name)
    packages = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", "."], cwd=where, capture_output=True, check=True, timeout=600
    ).stdout
    (where / "Packages").write_bytes(packages)
    return where


def installs(root: Path, arch: str, lines: list[AptLine], status: list[str], wanted: list[str]) -> bool:
    apt = IsolatedAptRoot(root, arch, lines, status)
    try:
        apt.update()
        apt.simulate(wanted)
    except KubeplayError as exc:
        print(f"    {arch}: does not install: {exc.message.splitlines()[-1] if exc.message else exc}")
        return False
    return True


def main() -> int:
    hosts = host_sources_for("bookworm")
    if not hosts:
        print("skipped: this machine's apt sources have no bookworm mirror")
        return 0
    target = find_target("debian", "12")
    request = package_request(SPEC, SPEC.os[0], target)
    work = Path(tempfile.mkdtemp(prefix="kubeplay-bench-osrepo-"))
    try:
        # kubeplay, cold cache
        t0 = time.monotonic()
        report = build_os_repos(
            SPEC,
            work / "bundle",
            Downloader(out=Output(quiet=True), progress=False),
            out=Output(quiet=True),
            cache_dir=work / "cache",
        )
        ours = time.monotonic() - t0
        plan = plan_apt_target(
            SPEC.os[0], target, packages=request, downloader=Downloader(out=Output(quiet=True), progress=False), cache=work / "cache",
            keyring_base=Path("."),
        )  # fmt: skip
        wanted = [w for w in request.optional if w not in plan.skipped]

        # peer: apt-get --download-only per arch, same mirror and baseline
        lines = [AptLine(h.uri, s, " ".join(h.components), DEBIAN_KEYRING) for h in hosts for s in h.suites]
        t0 = time.monotonic()
        peer_debs: dict[str, list[Path]] = {}
        for arch in ARCHES:
            apt = IsolatedAptRoot(work / f"peer-{arch}", arch, lines, plan.baseline_paragraphs[arch])
            apt.update()
            peer_debs[arch] = apt.download_only(wanted)
        theirs = time.monotonic() - t0

        print("OS repo closure + download, debian 12 amd64+arm64, default list")
        unique = {d.name: d for debs in peer_debs.values() for d in debs}  # arch:all files count once
        peer_count = len(unique)
        peer_bytes = sum(d.stat().st_size for d in unique.values())
        print(
            f"  kubeplay:              {ours:7.1f} s  {report.packages} packages  {report.bundled_bytes / 2**20:.1f} MiB"
        )
        print(f"  apt-get download-only: {theirs:7.1f} s  {peer_count} packages  {peer_bytes / 2**20:.1f} MiB")
        print(f"  ratio (apt-get / kubeplay): {theirs / ours:.2f}x")

        repo = work / "bundle/repos/apt/debian/bookworm"
        key = work / "bundle/repos/kubeplay-archive-keyring.gpg"
        ok_ours = all(
            installs(work / f"check-ours-{a}", a, [AptLine(repo.as_uri(), "bookworm", "main", key)],
                     plan.baseline_paragraphs[a], wanted)
            for a in ARCHES
        )  # fmt: skip
        ok_theirs = True
        for arch in ARCHES:
            flat = flat_repo(peer_debs[arch], work / f"flat-{arch}")
            apt = IsolatedAptRoot(work / f"check-peer-{arch}", arch, [], plan.baseline_paragraphs[arch])
            (apt.root / "etc/apt/sources.list").write_text(f"deb [trusted=yes] {flat.as_uri()} ./\n")
            try:
                apt.update()
                apt.simulate(wanted)
            except KubeplayError as exc:
                print(f"    {arch}: peer set does not install: {exc.message.splitlines()[-1]}")
                ok_theirs = False
        print(f"  installs offline: kubeplay={'yes' if ok_ours else 'NO'} apt-get={'yes' if ok_theirs else 'NO'}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
