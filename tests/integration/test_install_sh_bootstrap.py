"""install.sh on deploy nodes without a usable Python: it brings Python up from the bundle's own OS repo.

A bundle holding only what this needs (wheels/ for the Pythons the rules pick, the OS repos of Debian 12
and 13 with their Python packages, install.sh, deploy-node.txt, SHA256SUMS), built from PyPI and this
machine's configured Debian mirror. Deploy nodes are fresh mmdebstrap roots (variant minbase: no python3)
with no apt source at all, run in an empty network namespace: `kubeplay --version` from the venv proves
Python, the venv and the wheels all came from the bundle.

Needs root (chroot, unshare), mmdebstrap and the mirror; roots and packages are cached in
KUBEPLAY_TEST_CACHE (default /var/tmp/kubeplay-test-cache).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import (
    TEST_CACHE,
    debian_root_tarball,
    installed_debs,
    require_mirror,
    serve_directory,
    skip_or_fail,
)

from kubeplay import __version__
from kubeplay.bundle.install_files import add_install_files
from kubeplay.bundle.manifest import write_sha256sums
from kubeplay.config.bundle import BundleSpec
from kubeplay.console import Output
from kubeplay.fetch.http import Downloader
from kubeplay.lab.rootfs import RootfsError, debian_mirror
from kubeplay.osrepo import build_os_repos
from kubeplay.osrepo.deploy_python import deploy_table, plan_deploy
from kubeplay.osrepo.targets import find_target

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="requires root (chroot, unshare)"),
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the test bundle carries x86_64 wheels"),
    pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap not installed"),
]

MOUNT = "/srv/kubeplay-bundle"


def _mirror() -> str:
    try:
        uri = debian_mirror("bookworm")
    except RootfsError as exc:
        skip_or_fail(f"no Debian mirror configured: {exc}")
    require_mirror(f"{uri}/dists/trixie/InRelease", "the Debian mirror (trixie)")
    return uri


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """wheels/ + Debian 12 and 13 repos holding only the deploy node's Python (packages.defaults: false)."""
    mirror = _mirror()
    root = tmp_path_factory.mktemp("bundle") / "bundle"
    kubespray = root / "kubespray"
    (kubespray / "playbooks").mkdir(parents=True)
    (kubespray / "requirements.txt").write_text("ansible==11.13.0\njmespath==1.1.0\nnetaddr==1.3.0\n")
    (kubespray / "playbooks/ansible_version.yml").write_text(
        "- hosts: all\n  vars:\n    minimal_ansible_version: 2.18.0\n    maximal_ansible_version: 2.19.0\n"
    )
    spec = BundleSpec.model_validate(
        {
            "kubespray": {"version": "v2.31.0", "source": str(kubespray)},
            "os": [
                {"distro": "debian", "release": "12", "mirror": mirror},
                {"distro": "debian", "release": "13", "mirror": mirror},
            ],
            "packages": {"defaults": False},
        }
    )
    deploy = plan_deploy(spec, kubespray)
    assert deploy.pythons == ("3.11", "3.13")
    out = Output(quiet=True)
    build_os_repos(
        spec, root, Downloader(progress=False, out=out), out=out, cache_dir=TEST_CACHE / "osrepo", deploy=deploy
    )
    add_install_files(
        root,
        kube_version="1.33.4",
        arches=["amd64"],
        pythons=deploy.pythons,
        kubespray_dir=kubespray,
        deploy_table=deploy_table(deploy),
    )
    write_sha256sums(root, use_cache=False)
    return root


def _rootfs(suite: str, tmp: Path) -> Path:
    """A fresh minbase root of `suite` (cached tarball) with no apt source and no python3."""
    tarball = debian_root_tarball(_mirror, suite, "minbase")
    root = tmp / suite
    root.mkdir()
    with tarfile.open(tarball) as tar:
        tar.extractall(root, filter="fully_trusted")
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    for leftover in (root / "etc/apt/sources.list.d").glob("*"):
        leftover.unlink()
    assert not list((root / "usr/bin").glob("python3*"))
    (root / MOUNT.lstrip("/")).mkdir(parents=True)
    return root


def _install_sh(root: Path, bundle: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """install.sh inside `root` (chroot, empty network namespace), bundle mounted read-only; kubeplay --version."""
    return _in_root(root, bundle, ["sh", f"{MOUNT}/install.sh"], KUBEPLAY_COMMAND="--version", KUBEPLAY_LINK="", **env)


def _in_root(root: Path, bundle: Path, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    script = (
        "set -e\n"
        f"mount --rbind /dev {root}/dev\nmount -t proc proc {root}/proc\n"
        f"mount --bind {bundle} {root}{MOUNT}\nmount -o remount,bind,ro {root}{MOUNT}\n"
        f"exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "
        + " ".join(f"{k}={v}" for k, v in env.items())
        + f" chroot {root} "
        + " ".join(argv)
        + "\n"
    )
    return subprocess.run(
        ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def _installed(root: Path) -> set[str]:
    return set(installed_debs(root))


@pytest.mark.parametrize(("suite", "python"), [("bookworm", "3.11"), ("trixie", "3.13")])
def test_python_comes_from_the_bundle(bundle: Path, tmp_path: Path, suite: str, python: str) -> None:
    root = _rootfs(suite, tmp_path)
    before = _installed(root)
    proc = _install_sh(root, bundle)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert __version__ in proc.stdout  # `kubeplay --version`, run from the venv the bundle's wheels made
    assert f"installing Python {python} (python3 python3-venv) from the bundle's debian" in proc.stderr
    assert (root / f"opt/kubeplay/venv/bin/python{python}").exists()
    added = _installed(root) - before
    assert {"python3", "python3-venv", f"python{python}"} <= added
    record = (root / "var/lib/kubeplay/bootstrap/installed").read_text()
    recorded = {line.split()[1].removesuffix(":amd64") for line in record.splitlines() if line.startswith("package ")}
    assert recorded == added  # every package that came with Python, and nothing the node had before
    assert "created /var/lib/kubeplay" in record
    # the node's apt sources were never touched: the bundle's repo was a source for this one run only
    assert not list((root / "etc/apt/sources.list.d").iterdir())
    again = _install_sh(root, bundle, KUBEPLAY_SKIP_VERIFY="1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "installing Python" not in again.stderr and "creating" not in again.stderr
    # uninstall keeps that Python unless asked (bookworm), and with --purge-packages (trixie) removes exactly
    # what install.sh recorded, last, from the kubeplay running on it
    purge = ["--purge-packages"] if suite == "trixie" else []
    proc = _in_root(root, bundle, ["/opt/kubeplay/venv/bin/kubeplay", "uninstall", *purge])
    assert proc.returncode == 0, proc.stderr
    assert not (root / "var/lib/kubeplay").exists()
    if purge:
        assert "purged the Python install.sh installed: " in proc.stderr
        assert _installed(root) == before
    else:
        assert "kept the Python install.sh installed" in proc.stderr and f"python{python}" in proc.stderr
        assert _installed(root) - before == added


def test_an_os_the_bundle_has_no_repo_for_is_refused(bundle: Path, tmp_path: Path) -> None:
    root = _rootfs("bookworm", tmp_path)
    os_release = root / "etc/os-release"
    os_release.unlink()
    os_release.write_text('PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\n')
    proc = _install_sh(root, bundle, KUBEPLAY_SKIP_VERIFY="1")
    assert proc.returncode == 2, proc.stderr
    assert "this node runs Ubuntu 24.04 LTS (ubuntu 24.04); the bundle has no OS repo for it" in proc.stderr
    assert "(it has: debian 12, debian 13)" in proc.stderr
    assert not (root / "var/lib/kubeplay").exists()


def test_a_cluster_only_os_is_refused_naming_the_deploy_node_oses(bundle: Path, tmp_path: Path) -> None:
    # a bundle whose deploy-node.txt says Debian 12 has a repo but no deploy-node Python (as Debian 11 would)
    site = tmp_path / "site"
    shutil.copytree(bundle, site, symlinks=True)
    table = site / "deploy-node.txt"
    table.write_text(
        table.read_text().replace(
            "3.11 amd64 repos/apt/debian/bookworm python3 python3-venv", "- amd64 repos/apt/debian/bookworm -"
        )
    )
    root = _rootfs("bookworm", tmp_path)
    proc = _install_sh(root, site, KUBEPLAY_SKIP_VERIFY="1")
    assert proc.returncode == 2, proc.stderr
    assert "Debian GNU/Linux 12 (bookworm) (debian 12) can be a cluster node but not the deploy node" in proc.stderr
    assert "deploy-node OSes of this bundle: debian 13" in proc.stderr


# The rpm path. This Debian machine has dnf and rpmbuild but no EL repos: the deploy node is a Debian root
# with dnf, rpm and the Python dnf itself runs on, calling itself openEuler 24.03 (whose rule is Python 3.11
# from the package `python3`); the bundle's repo holds an rpmbuild-made `python3` that puts python3.11 on
# /usr/local/bin, the one place KUBEPLAY_PYTHON looks. Bootstrapping must go through dnf, that repo alone,
# its repomd signature and the package's signature.

RPM_TOOLS = ("rpmbuild", "rpmsign", "gpg", "createrepo_c")
OPENEULER = (
    'NAME="openEuler"\nVERSION="24.03 (LTS)"\nID="openEuler"\nVERSION_ID="24.03"\nPRETTY_NAME="openEuler 24.03 (LTS)"\n'
)
PYTHON_SPEC = """Name: python3
Version: 3.11.6
Release: 1
Summary: kubeplay test stand-in for openEuler's python3
License: MIT
BuildArch: noarch
AutoReqProv: no
%description
kubeplay test stand-in: python3.11 on /usr/local/bin
%install
mkdir -p %{buildroot}/usr/local/bin
ln -s /usr/bin/python3.11 %{buildroot}/usr/local/bin/python3.11
%files
/usr/local/bin/python3.11
"""


def _gpg_key(home: Path, email: str) -> tuple[list[str], Path]:
    home.mkdir(mode=0o700, parents=True)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run(
        [*gpg, "--quick-gen-key", f"test <{email}>", "rsa2048", "sign", "never"], check=True, capture_output=True
    )
    key = home.parent / f"RPM-GPG-KEY-{email.split('@', maxsplit=1)[0]}"
    key.write_text(
        subprocess.run([*gpg, "--armor", "--export", email], check=True, capture_output=True, text=True).stdout
    )
    return gpg, key


@pytest.fixture(scope="module")
def rpm_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Three upstream repos on loopback (good: signed by the key; unsigned; wrongkey: signed by another key);
    yields the server's base URL and the good key."""
    if missing := [t for t in RPM_TOOLS if shutil.which(t) is None]:
        pytest.skip(f"needs {', '.join(missing)}")
    work = tmp_path_factory.mktemp("rpm-upstream")
    spec = work / "python3.spec"
    spec.write_text(PYTHON_SPEC)
    subprocess.run(
        ["rpmbuild", "--define", f"_topdir {work / 'build'}", "-bb", str(spec)], check=True, capture_output=True
    )
    [rpm] = (work / "build/RPMS/noarch").glob("*.rpm")
    _, good = _gpg_key(work / "gnupg-good", "good@test.invalid")
    _gpg_key(work / "gnupg-other", "other@test.invalid")
    for name, signer in (("good", "good"), ("unsigned", None), ("wrongkey", "other")):
        repo = work / "srv" / name / "x86_64"
        (repo / "Packages").mkdir(parents=True)
        copy = repo / "Packages" / rpm.name
        shutil.copy(rpm, copy)
        if signer is not None:
            subprocess.run(
                [
                    "rpmsign", "--define", f"__gpg {shutil.which('gpg')}", "--define", f"_gpg_name {signer}@test.invalid",
                    "--define", "_gpg_sign_cmd_extra_args --batch --pinentry-mode loopback --passphrase ''",
                    "--addsign", str(copy),
                ],
                env={**os.environ, "GNUPGHOME": str(work / f"gnupg-{signer}")},
                check=True,
                capture_output=True,
            )  # fmt: skip
        subprocess.run(["createrepo_c", "--quiet", "--general-compress-type=gz", str(repo)], check=True)
    try:
        with serve_directory(work / "srv") as url:
            yield url, good
    finally:
        for home in ("gnupg-good", "gnupg-other"):
            subprocess.run(["gpgconf", "--homedir", str(work / home), "--kill", "all"], check=False, timeout=30)


def _rpm_bundle(root: Path, baseurl: str, key: Path, wheels: bool) -> Path:
    kubespray = root / "kubespray"
    kubespray.mkdir(parents=True)
    spec = BundleSpec.model_validate(
        {
            "kubespray": {"version": "v2.31.0", "source": str(kubespray)},
            "os": [
                {
                    "distro": "openeuler",
                    "release": "24.03",
                    "sources": [{"url": baseurl + "/$basearch", "name": "OS"}],
                    "keyring": str(key),
                }
            ],
            "packages": {"defaults": False},
        }
    )
    deploy = plan_deploy(spec, None)  # the fallback ansible-core 2.18: Python 3.11 from `python3`
    assert deploy.packages_for(find_target("openeuler", "24.03")) == ("python3",)
    out = Output(quiet=True)
    build_os_repos(
        spec, root, Downloader(progress=False, out=out), out=out, cache_dir=root.parent / "cache", deploy=deploy
    )
    add_install_files(root, kube_version="1.33.4", arches=["amd64"], pythons=["3.11"], with_wheels=wheels,
                      deploy_table=deploy_table(deploy))  # fmt: skip
    (root / "wheels").mkdir(exist_ok=True)
    write_sha256sums(root, use_cache=False)
    return root


def _dnf_root(tmp: Path) -> Path:
    """A bookworm root with dnf and rpm (cached tarball), calling itself openEuler 24.03, no apt source."""
    tarball = debian_root_tarball(_mirror, "bookworm", "minbase", include="dnf,rpm", label="dnf")
    root = tmp / "el"
    root.mkdir()
    with tarfile.open(tarball) as tar:
        tar.extractall(root, filter="fully_trusted")
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/os-release").unlink()
    (root / "etc/os-release").write_text(OPENEULER)
    (root / MOUNT.lstrip("/")).mkdir(parents=True)
    return root


def _rpms(root: Path) -> set[str]:
    out = subprocess.run(
        ["chroot", str(root), "rpm", "-qa", "--qf", "%{NAME}\n"], capture_output=True, text=True, check=True
    )
    return {n for n in out.stdout.split() if n != "gpg-pubkey"}


def test_rpm_python_comes_from_the_bundle_with_signatures_checked(
    rpm_upstream: tuple[str, Path], tmp_path: Path
) -> None:
    base, key = rpm_upstream
    bundle = _rpm_bundle(tmp_path / "bundle", base + "/good", key, wheels=True)
    assert (bundle / "deploy-node.txt").read_text().splitlines()[-1] == (
        "openeuler 24.03 - rpm 3.11 amd64 repos/rpm/openeuler/24.03 python3"
    )
    root = _dnf_root(tmp_path)
    proc = _install_sh(root, bundle, KUBEPLAY_PYTHON="/usr/local/bin/python3.11")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert __version__ in proc.stdout
    assert "installing Python 3.11 (python3) from the bundle's openeuler 24.03 repo" in proc.stderr
    assert _rpms(root) == {"python3"}
    repo = (root / "var/lib/kubeplay/bootstrap/yum.repos.d/kubeplay-bootstrap.repo").read_text()
    assert "gpgcheck=1\nrepo_gpgcheck=1\n" in repo and "RPM-GPG-KEY-openeuler" in repo
    record = (root / "var/lib/kubeplay/bootstrap/installed").read_text()
    assert "family rpm\n" in record and "package python3\n" in record


@pytest.mark.parametrize("variant", ["unsigned", "wrongkey"])
def test_rpm_bootstrap_refuses_a_package_the_distro_key_did_not_sign(
    rpm_upstream: tuple[str, Path], tmp_path: Path, variant: str
) -> None:
    base, key = rpm_upstream
    bundle = _rpm_bundle(tmp_path / "bundle", f"{base}/{variant}", key, wheels=False)
    root = _dnf_root(tmp_path)
    proc = _install_sh(root, bundle, KUBEPLAY_PYTHON="/usr/local/bin/python3.11")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "installing python3 from the bundle's repo failed" in proc.stderr
    expected = (
        "is not signed" if variant == "unsigned" else "Public key for python3-3.11.6-1.noarch.rpm is not installed"
    )
    assert expected in proc.stderr and "GPG check FAILED" in proc.stderr  # dnf's own refusal
    assert _rpms(root) == set()
    assert not (root / "usr/local/bin/python3.11").exists()
