"""rpm end to end: packages built here with rpmbuild and signed, published upstream with createrepo_c on
loopback, resolved and written by kubeplay, then installed by dnf with only the offline repo enabled."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import createrepo_c as cr
import pytest
import yaml
from tests.build_fixture import os_repos_quietly
from tests.conftest import serve_directory

from kubeplay.config.bundle import BundleSpec
from kubeplay.errors import BadInput, FetchError

pytestmark = [pytest.mark.integration]

NEEDED = ("rpmbuild", "rpmsign", "gpg", "dnf", "rpm")
if missing := [t for t in NEEDED if shutil.which(t) is None]:
    pytest.skip(f"needs {', '.join(missing)}", allow_module_level=True)

# name, version, extra spec lines, files installed
PACKAGES: list[tuple[str, str, str, list[str]]] = [
    (
        "kp-app",
        "1.0",
        "Requires: kp-lib >= 2.0\nRequires: webserver\nRequires: (kp-plugin-a or kp-plugin-b)\n"
        "Requires: /usr/bin/kp-tool\nRecommends: kp-extra\n",
        ["/usr/share/kp-app/app"],
    ),
    ("kp-lib", "1.0", "", ["/usr/share/kp-lib/lib"]),
    ("kp-lib", "2.1", "", ["/usr/share/kp-lib/lib"]),
    ("kp-httpd", "1.0", "Provides: webserver\n", ["/usr/share/kp-httpd/httpd"]),
    ("kp-plugin-a", "1.0", "", ["/usr/share/kp-plugin-a/a"]),
    ("kp-plugin-b", "1.0", "", ["/usr/share/kp-plugin-b/b"]),
    ("kp-tools", "1.0", "", ["/usr/bin/kp-tool"]),
    ("kp-extra", "1.0", "", ["/usr/share/kp-extra/extra"]),
    ("kp-mod", "1.0", "", ["/usr/share/kp-mod/v1"]),
    ("kp-mod", "2.0", "", ["/usr/share/kp-mod/v2"]),
    ("kp-mod", "3.0", "", ["/usr/share/kp-mod/v3"]),  # not in any stream: hidden while kpmod is enabled
    ("kp-broken", "1.0", "Requires: kp-nowhere\n", ["/usr/share/kp-broken/x"]),
]


def _spec(name: str, version: str, extra: str, files: list[str]) -> str:
    install = "\n".join(f"mkdir -p %{{buildroot}}{os.path.dirname(f)}\necho {name} > %{{buildroot}}{f}" for f in files)
    return (
        f"Name: {name}\nVersion: {version}\nRelease: 1\nSummary: kubeplay test package\nLicense: MIT\n"
        f"BuildArch: noarch\n{extra}\n%description\nkubeplay test package {name}\n\n"
        f"%install\n{install}\n\n%files\n" + "\n".join(files) + "\n"
    )


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300, **kw)  # type: ignore[call-overload]


def _modules_yaml() -> str:
    docs: list[dict[str, object]] = []
    for stream, version in (("1", "1.0"), ("2", "2.0")):
        docs.append(
            {
                "document": "modulemd",
                "version": 2,
                "data": {
                    "name": "kpmod",
                    "stream": stream,
                    "version": 1,
                    "context": "c0ffee42",
                    "arch": "noarch",
                    "summary": "kubeplay test module",
                    "description": "kubeplay test module",
                    "license": {"module": ["MIT"]},
                    "profiles": {"default": {"rpms": ["kp-mod"]}},
                    "artifacts": {"rpms": [f"kp-mod-0:{version}-1.noarch"]},
                },
            }
        )
    docs.append({"document": "modulemd-defaults", "version": 1, "data": {"module": "kpmod", "stream": "1"}})
    return yaml.safe_dump_all(docs, explicit_start=True, explicit_end=True, sort_keys=False)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A signed upstream repo (with a module) served over HTTP on loopback; yields (baseurl, public key)."""
    work = tmp_path_factory.mktemp("rpm-upstream")
    gnupg = work / "gnupg"
    gnupg.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(gnupg), "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    _run([*gpg, "--quick-gen-key", "kubeplay rpm test <rpm@test.invalid>", "rsa2048", "sign", "never"])
    key = work / "RPM-GPG-KEY-test"
    key.write_text(_run([*gpg, "--armor", "--export", "rpm@test.invalid"]).stdout)
    top = work / "rpmbuild"
    for name, version, extra, files in PACKAGES:
        spec = work / f"{name}-{version}.spec"
        spec.write_text(_spec(name, version, extra, files))
        _run(["rpmbuild", "--define", f"_topdir {top}", "-bb", str(spec)])
    repo = work / "repo" / "x86_64"
    (repo / "Packages").mkdir(parents=True)
    rpms = sorted((top / "RPMS" / "noarch").glob("*.rpm"))
    for rpm in rpms:
        shutil.copy(rpm, repo / "Packages" / rpm.name)
    signed = sorted((repo / "Packages").glob("*.rpm"))
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    _run(
        [
            "rpmsign",
            "--define",
            f"__gpg {shutil.which('gpg')}",
            "--define",
            "_gpg_name rpm@test.invalid",
            "--define",
            "_gpg_sign_cmd_extra_args --batch --pinentry-mode loopback --passphrase ''",
            "--addsign",
            *map(str, signed),
        ],
        env=env,
    )
    modules = work / "modules.yaml"
    modules.write_text(_modules_yaml())
    with cr.RepositoryWriter(str(repo), compression=cr.GZ_COMPRESSION) as writer:
        writer.set_num_of_pkgs(len(signed))
        for rpm in signed:
            writer.add_pkg_from_file(str(rpm))
        writer.add_repomd_metadata("modules", str(modules))
    try:
        with serve_directory(work / "repo") as url:
            yield f"{url}/$basearch", key
    finally:
        subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "all"], check=False, timeout=30)


def _spec_for(baseurl: str, key: Path, packages: list[str], **target: object) -> BundleSpec:
    return BundleSpec.model_validate(
        {
            "kubespray": {"version": "v2.31.0", "source": "/nonexistent"},
            "os": [
                {
                    "distro": "rocky",
                    "release": "9",
                    "arches": ["amd64"],
                    "sources": [{"url": baseurl, "name": "test"}],
                    "keyring": str(key),
                    **target,
                }
            ],
            "packages": {"yum": packages, "defaults": False},
        }
    )


def _dnf_install(tmp: Path, repo: Path, key: Path, bundle_key: Path, names: list[str]) -> set[str]:
    """dnf with only the offline repo (packages and repomd signatures checked) installs `names`; returns rpm -qa."""
    root, reposdir, cache = tmp / "root", tmp / "repos.d", tmp / "cache"
    for d in (root, reposdir, cache):
        d.mkdir(parents=True)
    conf = tmp / "dnf.conf"
    conf.write_text("[main]\ngpgcheck=1\ninstall_weak_deps=False\nkeepcache=False\n")
    (reposdir / "offline.repo").write_text(
        f"[offline]\nname=offline\nbaseurl={repo.as_uri()}/$basearch\ngpgcheck=1\nrepo_gpgcheck=1\n"
        f"gpgkey={key.as_uri()} {bundle_key.as_uri()}\nenabled=1\n"
    )
    cmd = [
        "dnf", "-y", "-c", str(conf), f"--installroot={root}", "--releasever=9", f"--setopt=reposdir={reposdir}",
        f"--setopt=cachedir={cache}", "--disablerepo=*", "--enablerepo=offline", "--forcearch=x86_64",
        "install", *names,
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    finally:
        # repo_gpgcheck makes dnf import the repo keys with gpg, which leaves a gpg-agent per keyring running
        for keyring in cache.glob("*/pubring"):
            subprocess.run(["gpgconf", "--homedir", str(keyring), "--kill", "gpg-agent"], check=False, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    qa = _run(["rpm", "--root", str(root), "-qa", "--qf", "%{NAME}-%{VERSION}\n"]).stdout.split()
    return {q for q in qa if not q.startswith("gpg-pubkey")}


def test_dnf_installs_requested_set_from_offline_repo_alone(upstream: tuple[str, Path], tmp_path: Path) -> None:
    baseurl, key = upstream
    spec = _spec_for(baseurl, key, ["kp-app", "kp-mod"])
    bundle = tmp_path / "bundle"
    report = os_repos_quietly(spec, bundle, tmp_path / "cache")
    repo = bundle / "repos" / "rpm" / "rocky" / "9"
    bundled = {p.name.rsplit("-", 2)[0] + "-" + p.name.rsplit("-", 2)[1] for p in repo.glob("x86_64/Packages/*/*.rpm")}
    # versioned Requires -> kp-lib 2.1; virtual -> kp-httpd; file dep -> kp-tools; rich dep -> one plugin;
    # Recommends off; the module's default stream wins over the newer non-modular kp-mod 3.0.
    assert {"kp-app-1.0", "kp-lib-2.1", "kp-httpd-1.0", "kp-tools-1.0", "kp-mod-1.0"} <= bundled
    assert len(bundled & {"kp-plugin-a-1.0", "kp-plugin-b-1.0"}) == 1
    assert not bundled & {"kp-extra-1.0", "kp-lib-1.0", "kp-mod-2.0", "kp-mod-3.0", "kp-broken-1.0"}
    assert report.targets[0].packages == len(bundled)
    assert (repo / "x86_64" / "repodata" / "repomd.xml.asc").is_file()
    modules = [p for p in (repo / "x86_64" / "repodata").iterdir() if "modules" in p.name]
    assert modules, "module metadata must ship with the repo"
    # upstream signatures kept: rpm -K with only the upstream key accepts every bundled package
    keydb = tmp_path / "keydb"
    keydb.mkdir()
    _run(["rpmkeys", "--dbpath", str(keydb), "--import", str(key)])
    for rpm in repo.glob("x86_64/Packages/*/*.rpm"):
        out = _run(["rpmkeys", "--dbpath", str(keydb), "--checksig", str(rpm)]).stdout
        assert "signatures OK" in out or "pgp" in out.lower(), out
    installed = _dnf_install(
        tmp_path / "dnf", repo, repo / "RPM-GPG-KEY-rocky", bundle / report.keyring, ["kp-app", "kp-mod"]
    )  # type: ignore[operator]
    assert installed == bundled


def test_non_default_module_stream_and_recommends(upstream: tuple[str, Path], tmp_path: Path) -> None:
    baseurl, key = upstream
    spec = _spec_for(baseurl, key, ["kp-mod", "kp-app"], modules=["kpmod:2"], recommends=True)
    os_repos_quietly(spec, tmp_path / "b", tmp_path / "cache")
    names = {p.name for p in (tmp_path / "b/repos/rpm/rocky/9/x86_64/Packages").glob("*/*.rpm")}
    assert any(n.startswith("kp-mod-2.0") for n in names)
    assert any(n.startswith("kp-extra-1.0") for n in names)


def test_bad_input_names_package_and_closest_and_writes_nothing(upstream: tuple[str, Path], tmp_path: Path) -> None:
    baseurl, key = upstream
    with pytest.raises(BadInput) as err:
        os_repos_quietly(_spec_for(baseurl, key, ["kp-ap"]), tmp_path / "b", tmp_path / "c")
    assert "kp-ap" in err.value.message and "rocky 9 x86_64" in err.value.message
    assert "kp-app" in (err.value.hint or "")
    assert err.value.exit_code == 2
    with pytest.raises(BadInput) as err:
        os_repos_quietly(_spec_for(baseurl, key, ["kp-broken"]), tmp_path / "b", tmp_path / "c")
    assert "kp-nowhere" in err.value.message  # the solver's own problem text
    with pytest.raises(BadInput) as err:
        os_repos_quietly(_spec_for(baseurl, key, ["kp-mod"], modules=["kpmod:7"]), tmp_path / "b", tmp_path / "c")
    assert "kpmod:1" in (err.value.hint or "")
    assert not (tmp_path / "b" / "repos" / "rpm").exists()


def test_unreachable_mirror_is_a_clear_error(tmp_path: Path, upstream: tuple[str, Path]) -> None:
    _, key = upstream
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = _spec_for(f"http://127.0.0.1:{port}/$basearch", key, ["kp-app"])
    with pytest.raises(FetchError) as err:
        os_repos_quietly(spec, tmp_path / "b", tmp_path / "c", retries=1, timeout=5)
    assert f"127.0.0.1:{port}" in err.value.message
    assert not (tmp_path / "b" / "repos" / "rpm").exists()
