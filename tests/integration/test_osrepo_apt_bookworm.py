"""apt on real data: Debian 12 (bookworm) amd64 + arm64, default package list, from this machine's own
configured Debian mirror (read from its apt sources at run time).

Indexes and packages are cached (KUBEPLAY_TEST_CACHE, default /var/tmp/kubeplay-test-cache) so that
repeated runs download only what the mirror changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from tests.conftest import (
    DEBIAN_KEYRING,
    TEST_CACHE,
    debian_root_tarball,
    installed_debs,
    require_mirror,
    skip_or_fail,
)

from kubeplay.config.bundle import BundleSpec
from kubeplay.console import Output
from kubeplay.errors import StepFailed
from kubeplay.fetch.http import Downloader
from kubeplay.osrepo import OsRepoReport, build_os_repos
from kubeplay.osrepo.apt_check import AptLine, IsolatedAptRoot
from kubeplay.osrepo.apt_target import AptPlan, plan_apt_target
from kubeplay.osrepo.build import package_request
from kubeplay.osrepo.host_sources import host_sources_for
from kubeplay.osrepo.targets import find_target

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _mirror() -> str:
    sources = [s for s in host_sources_for("bookworm") if "bookworm" in s.suites]
    if not sources:
        skip_or_fail("this machine's apt sources have no Debian bookworm mirror")
    uri = sources[0].uri
    require_mirror(f"{uri}/dists/bookworm/InRelease")
    return uri


SPEC = {
    "kubespray": {"version": "v2.31.0", "source": "/nonexistent"},
    "os": [{"distro": "debian", "release": "12", "arches": ["amd64", "arm64"]}],
}


def _wanted(plan: AptPlan) -> list[str]:
    """The default list as the build requested it, less defaults bookworm lacks."""
    spec = BundleSpec.model_validate(SPEC)
    request = package_request(spec, spec.os[0], find_target("debian", "12"))
    return [w for w in request.optional if w not in plan.skipped]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, OsRepoReport, AptPlan]:
    """The bundle's repo for bookworm (host mirror), the report, and the plan behind it (baselines)."""
    _mirror()
    spec = BundleSpec.model_validate(SPEC)
    bundle = tmp_path_factory.mktemp("bundle")
    downloader = Downloader(out=Output(quiet=True), progress=False)
    report = build_os_repos(spec, bundle, downloader, out=Output(quiet=True), cache_dir=TEST_CACHE / "osrepo")
    target = find_target("debian", "12")
    plan = plan_apt_target(
        spec.os[0],
        target,
        packages=package_request(spec, spec.os[0], target),
        downloader=downloader,
        cache=TEST_CACHE / "osrepo",
        keyring_base=Path("."),
    )
    return bundle, report, plan


def _packages(repo: Path, arch: str) -> list[dict[str, str]]:
    text = (repo / "dists/bookworm/main" / f"binary-{arch}" / "Packages").read_text()
    return [dict(re.findall(r"^(\S+):[ \t]*(.*)$", para, re.M)) for para in text.strip().split("\n\n")]


def test_repo_layout_hashes_and_signature(built: tuple[Path, OsRepoReport, AptPlan]) -> None:
    bundle, report, _ = built
    repo = bundle / "repos/apt/debian/bookworm"
    assert report.targets[0].path == "repos/apt/debian/bookworm"
    keyring = bundle / "repos/kubeplay-archive-keyring.gpg"
    ok = subprocess.run(
        ["gpgv", "--keyring", str(keyring), str(repo / "dists/bookworm/InRelease")], capture_output=True, check=False
    )
    assert ok.returncode == 0, ok.stderr
    foreign = subprocess.run(
        ["gpgv", "--keyring", str(DEBIAN_KEYRING), str(repo / "dists/bookworm/InRelease")],
        capture_output=True,
        check=False,
    )
    assert foreign.returncode != 0
    release = (repo / "dists/bookworm/Release").read_text()
    for digest, size, name in re.findall(r"^ ([0-9a-f]{64})\s+(\d+) (\S+)$", release, re.M):
        data = (repo / "dists/bookworm" / name).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (digest, int(size))
    names: dict[str, set[str]] = {}
    for arch in ("amd64", "arm64"):
        names[arch] = set()
        for p in _packages(repo, arch):
            deb = repo / p["Filename"]
            assert deb.stat().st_size == int(p["Size"]), p["Filename"]
            names[arch].add(p["Package"])
        assert {"containerd", "nginx", "chrony", "conntrack", "ipvsadm", "python3-venv", "nfs-common"} <= names[arch]
    assert "libc6" not in names["amd64"], "the minimal baseline already has libc6"
    assert report.targets[0].packages == len({p.name for p in repo.glob("pool/**/*.deb")})


def _offline_root(
    tmp: Path, bundle: Path, arch: str, status: list[str], keyring: Path | None = None
) -> IsolatedAptRoot:
    repo = bundle / "repos/apt/debian/bookworm"
    key = keyring or bundle / "repos/kubeplay-archive-keyring.gpg"
    return IsolatedAptRoot(tmp, arch, [AptLine(repo.as_uri(), "bookworm", "main", key)], status)


@pytest.mark.parametrize("arch", ["arm64", "amd64"])
def test_offline_repo_alone_satisfies_apt_and_matches_apts_choices(
    built: tuple[Path, OsRepoReport, AptPlan], tmp_path: Path, arch: str
) -> None:
    bundle, _, plan = built
    wanted = _wanted(plan)
    offline = _offline_root(tmp_path / "offline", bundle, arch, plan.baseline_paragraphs[arch])
    offline.update()
    installs = dict(offline.simulate(wanted))
    bundled = {p["Package"]: p["Version"] for p in _packages(bundle / "repos/apt/debian/bookworm", arch)}
    assert installs == bundled, "every bundled package is needed, and every needed one is bundled"
    # apt itself, against the full upstream mirror and the same baseline, picks exactly the same set
    lines = [
        AptLine(s.uri, suite, " ".join(s.components), DEBIAN_KEYRING)
        for s in host_sources_for("bookworm")
        for suite in s.suites
    ]
    upstream = IsolatedAptRoot(tmp_path / "upstream", arch, lines, plan.baseline_paragraphs[arch])
    upstream.update()
    assert dict(upstream.simulate(wanted)) == bundled


def test_apt_refuses_the_repo_with_another_key(built: tuple[Path, OsRepoReport, AptPlan], tmp_path: Path) -> None:
    bundle, _, plan = built
    root = _offline_root(tmp_path, bundle, "amd64", plan.baseline_paragraphs["amd64"], keyring=DEBIAN_KEYRING)
    with pytest.raises(StepFailed, match=r"not signed|NO_PUBKEY|signatures couldn't be verified"):
        root.update()
        root.simulate(["socat"])


@pytest.mark.e2e
def test_fresh_rootfs_without_network_installs_every_bundled_package(
    built: tuple[Path, OsRepoReport, AptPlan], tmp_path: Path
) -> None:
    if os.geteuid() != 0 or shutil.which("mmdebstrap") is None or shutil.which("unshare") is None:
        pytest.skip("requires root, mmdebstrap and unshare")
    bundle, _, plan = built
    root = tmp_path / "rootfs"
    root.mkdir()
    with tarfile.open(debian_root_tarball(_mirror, "bookworm", "required")) as tar:  # from the same mirror
        tar.extractall(root, filter="fully_trusted")
    # the default baseline (Essential + required and their dependencies) is what this minimal install has
    before = set(re.findall(r"^Package: (\S+)", (root / "var/lib/dpkg/status").read_text(), re.M))
    assert before == {re.match(r"Package: (\S+)", p).group(1) for p in plan.baseline_paragraphs["amd64"]}  # type: ignore[union-attr]
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    for leftover in (root / "etc/apt/sources.list.d").glob("*"):
        leftover.unlink()
    (root / "srv/kubeplay").mkdir(parents=True)
    (root / "etc/apt/sources.list.d/kubeplay.sources").write_text(
        "Types: deb\nURIs: file:/srv/kubeplay/apt/debian/bookworm\nSuites: bookworm\nComponents: main\n"
        "Signed-By: /srv/kubeplay/kubeplay-archive-keyring.gpg\n"
    )
    policy = root / "usr/sbin/policy-rc.d"  # a chroot has no init: services must not start
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    wanted = _wanted(plan)
    script = (
        "set -e\n"
        'test "$(ip -o link show | wc -l)" = 1\n'  # an empty network namespace: loopback only, down
        f"mount --rbind /dev {root}/dev\nmount -t proc proc {root}/proc\n"
        f"mount --bind -o ro {bundle}/repos {root}/srv/kubeplay\n"
        f"chroot {root} apt-get update\n"
        f"DEBIAN_FRONTEND=noninteractive chroot {root} apt-get install -y --no-install-recommends {' '.join(wanted)}\n"
    )
    proc = subprocess.run(
        ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Err:" not in proc.stdout
    installed = installed_debs(root)
    bundled = {p["Package"]: p["Version"] for p in _packages(bundle / "repos/apt/debian/bookworm", "amd64")}
    missing = {n: v for n, v in bundled.items() if installed.get(n) != v}
    assert not missing, f"bundled but not installed: {missing}"
