"""`install.sh` → `kubeplay install` on a lab node, checked from a second lab node as a cluster node would:
CA over HTTP, every image over TLS by domain with that CA (curl, no insecure flags), a file by URL with its
digest, `apt-get update` against the bundle repo with signature checking, chrony syncing to the deploy
node, pushes refused. Then: status, uninstall, kill -9 mid-install and re-run, wrong arch/distro and a
busy port refused at preflight.

The bundle is assembled here from the pieces the build uses: a registry storage with real images
(tests/bootstrap_fixture.py), the OS repo from this machine's Debian mirror (kubeplay.osrepo, only the
deploy node's packages), wheels + install.sh (kubeplay.bundle.install_files); packed and extracted with
kubeplay.bundle, then the directory is copied into the node (the node has no zstd to unpack it).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kubeplay.bootstrap.registry import manifest_children, tagged_images
from kubeplay.bundle.manifest import OsRepoRecord, read_manifest, write_manifest, write_sha256sums
from kubeplay.lab.nodes import Lab, LabNode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bootstrap_fixture import make_bundle
from tests.e2e.conftest import (
    BUNDLE_IN_NODE,
    CONFIG,
    DEPLOY_PACKAGES,
    DOMAIN,
    INSTALL_MARKS,
    NSPAWN_ARGS,
    ok,
    require_bookworm_mirror,
    sh,
)

pytestmark = INSTALL_MARKS

LAB_NODES = 2
CACHE = Path(os.environ.get("KUBEPLAY_TEST_CACHE", "/var/tmp/kubeplay-test-cache"))


def build_bundle(root: Path, baseline: Path) -> Path:
    """A real, small bundle directory: images, files, signed bookworm repo, wheels, install.sh.

    `baseline` is the node's dpkg status: the closure then bundles exactly what such a node lacks
    (without one it assumes a standard Debian with all Priority: required packages, e.g. tzdata).
    """
    from kubeplay.bundle.extract import extract_bundle
    from kubeplay.bundle.install_files import add_install_files
    from kubeplay.bundle.pack import pack_bundle
    from kubeplay.config.bundle import BundleSpec
    from kubeplay.console import Output
    from kubeplay.fetch.http import Downloader
    from kubeplay.osrepo import build_os_repos

    require_bookworm_mirror()
    bundle = make_bundle(root, images=3, layers_per_image=2, layer_size=256 * 1024, os_repos=())
    spec = BundleSpec.model_validate(
        {
            "kubespray": {"version": "v2.31.0", "source": "/nonexistent"},
            "os": [{"distro": "debian", "release": "12", "arches": ["amd64"], "baseline": str(baseline)}],
            "packages": {"defaults": False, "apt": DEPLOY_PACKAGES},
        }
    )
    quiet = Output(quiet=True)
    report = build_os_repos(spec, bundle, Downloader(out=quiet, progress=False), out=quiet, cache_dir=CACHE / "osrepo")
    manifest = read_manifest(bundle)
    manifest.os_repos = [
        OsRepoRecord(family=t.family, distro=t.distro, release=t.release, arches=t.arches, path=t.path)
        for t in report.targets
    ]
    write_manifest(bundle, manifest)
    add_install_files(
        bundle, kube_version="1.35.0", arches=["amd64"], pythons=["3.11"], cache_dir=CACHE / "install-e2e-wheels"
    )
    write_sha256sums(bundle, use_cache=False)
    archive = pack_bundle(bundle, root / "packed", "kubeplay-e2e").archive
    return extract_bundle(archive, root / "extracted").root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, lab: Lab) -> Path:
    root = tmp_path_factory.mktemp("install-bundle")
    baseline = root / "node-dpkg-status"
    shutil.copyfile(lab.nodes[0].root / "var/lib/dpkg/status", baseline)
    return build_bundle(root, baseline)


@pytest.fixture(scope="module")
def lab(make_lab: Callable[..., Lab]) -> Lab:
    return make_lab(LAB_NODES, nspawn_args=NSPAWN_ARGS)


@pytest.fixture(scope="module")
def installed(lab: Lab, bundle: Path) -> tuple[LabNode, LabNode, str]:
    node0, node1 = lab.nodes
    node0.copy_in(bundle, BUNDLE_IN_NODE)
    node0.copy_in(_config_file(bundle.parent, node1.ip), "/root/config.yaml")
    out = ok(node0, f"{BUNDLE_IN_NODE}/install.sh -c /root/config.yaml 2>&1", timeout=900)
    return node0, node1, out


def _config_file(where: Path, node1_ip: str) -> Path:
    path = where / "config.yaml"
    path.write_text(CONFIG.replace("NODE1_IP", node1_ip))
    return path


def test_install_serves_and_reports(installed: tuple[LabNode, LabNode, str]) -> None:
    node0, _, out = installed
    assert f"compose.internal_ip is empty: using {node0.ip}" in out
    assert f"serving https://{DOMAIN}" in out
    assert "✓ health: registry /v2/ over TLS" in out
    units = ok(node0, "systemctl is-active kubeplay-registry kubeplay-nginx chrony")
    assert units.split() == ["active", "active", "active"]
    status = ok(node0, "kubeplay status --json")
    report = json.loads(status[status.index("{") : status.rindex("}") + 1])
    assert report["healthy"] is True and all(report["steps"].values())
    assert ok(node0, f"grep -c {DOMAIN} /etc/hosts").strip() == "1"
    assert ok(node0, "test -s /etc/ssl/certs/kubeplay-rootCA.pem && echo yes").strip() == "yes", "CA trusted"
    # the user's config is never rewritten; the effective one is in the state dir
    assert "internal_ip:\n" in ok(node0, "cat /root/config.yaml")
    assert f"internal_ip: {node0.ip}" in ok(node0, "cat /var/lib/kubeplay/config.effective.yaml")
    assert ok(node0, "stat -c %a /etc/kubeplay/certs/domain.key /etc/kubeplay/certs/rootCA.key").split() == [
        "600",
        "600",
    ]


def test_second_node_uses_the_deploy_node(installed: tuple[LabNode, LabNode, str], bundle: Path) -> None:
    node0, node1, _ = installed
    http = f"http://{node0.ip}:8080"
    # The CA and the repo key over plain HTTP (python3: the node has no curl yet).
    # (apt reads keys as its _apt user: the keyring goes to /etc/apt/keyrings, not /root.)
    fetch = "import sys,urllib.request as u; open(sys.argv[2],'wb').write(u.urlopen(sys.argv[1]).read())"
    ok(node1, "mkdir -p /etc/apt/keyrings")
    ok(node1, f"python3 -c {shlex.quote(fetch)} {http}/certs/rootCA.crt /root/rootCA.crt")
    ok(
        node1,
        f"python3 -c {shlex.quote(fetch)} {http}/repos/kubeplay-archive-keyring.gpg /etc/apt/keyrings/kubeplay.gpg",
    )
    # The served repos are signed by the deploy node's own key (kept across bundles), not the bundle's
    # throwaway build key: the key served is node0's.
    served_key = ok(node0, "sha256sum < /var/lib/kubeplay/served/repos/kubeplay-archive-keyring.gpg").split()[0]
    assert ok(node1, "sha256sum < /etc/apt/keyrings/kubeplay.gpg").split()[0] == served_key
    assert served_key != _sha256(bundle / "repos/kubeplay-archive-keyring.gpg")

    # apt against the bundle repo over HTTP, signature checked (no trusted=yes), then packages from it.
    sources = (
        "Types: deb\n"
        f"URIs: {http}/repos/apt/debian/bookworm\n"
        "Suites: bookworm\nComponents: main\nSigned-By: /etc/apt/keyrings/kubeplay.gpg\n"
    )
    ok(node1, f"printf %s {shlex.quote(sources)} > /root/kubeplay.sources")
    apt = "apt-get -o Dir::Etc::SourceList=/root/kubeplay.sources -o Dir::Etc::SourceParts=- "
    update = ok(node1, apt + "update 2>&1")
    assert "bookworm InRelease" in update and "NO_PUBKEY" not in update and "not signed" not in update
    ok(node1, "DEBIAN_FRONTEND=noninteractive " + apt + "install -y -q --no-install-recommends curl chrony 2>&1", 600)

    # Every image by domain name over TLS with the CA: manifests and blobs, digests checked.
    ok(node1, f"echo '{node0.ip} {DOMAIN}' >> /etc/hosts")
    storage = bundle / "registry"
    accept = "application/vnd.oci.image.manifest.v1+json"
    curl = "curl -sSf --cacert /root/rootCA.crt"
    for img in tagged_images(storage):
        base = f"https://{DOMAIN}/v2/{img.repository}"
        got = ok(node1, f"{curl} -H 'Accept: {accept}' {base}/manifests/{img.tag} | sha256sum").split()[0]
        assert f"sha256:{got}" == img.digest
        for blob in manifest_children(storage, img.digest)[2]:
            got = ok(node1, f"{curl} {base}/blobs/{blob} | sha256sum").split()[0]
            assert f"sha256:{got}" == blob
    # A file by URL, compared with its digest.
    f = read_manifest(bundle).files[0]
    assert ok(node1, f"{curl} {http}/{f.path} | sha256sum").split()[0] == f.sha256
    # Pushes through 443 are refused.
    for method in ("POST", "PUT", "DELETE"):
        code = ok(
            node1,
            f"curl -s -o /dev/null -w '%{{http_code}}' --cacert /root/rootCA.crt -X {method} "
            f"https://{DOMAIN}/v2/{img.repository}/blobs/uploads/",
        )
        assert code.strip() == "403", method

    # chrony on node1 syncs to the deploy node (-x: the container may not set the clock).
    ok(node1, f"printf 'server {node0.ip} iburst\\n' > /root/chrony-client.conf")
    ok(node1, "chronyd -x -f /root/chrony-client.conf")
    try:
        ok(node1, "chronyc waitsync 40 0 0 1", timeout=120)
        sources_out = ok(node1, "chronyc -n sources")
        assert f"^* {node0.ip}" in sources_out
    finally:
        sh(node1, "kill $(cat /run/chrony/chronyd.pid)")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_preflight_refuses_wrong_arch_and_distro(installed: tuple[LabNode, LabNode, str]) -> None:
    node0, _, _ = installed
    rewrite = (
        "import json,sys; p=sys.argv[1]; m=json.load(open(p)); {change}; "
        "import os; os.unlink(p); json.dump(m, open(p,'w'))"
    )
    for name, change, expect in (
        ("arch", "m['arches']=['arm64']", "this node is amd64; the bundle was built for arm64"),
        ("distro", "m['os_repos'][0]['distro']='ubuntu'", "no OS package repo for this node's debian bookworm"),
    ):
        copy = f"/root/bundle-{name}"
        ok(node0, f"rm -rf {copy} && cp -al {BUNDLE_IN_NODE} {copy}")
        ok(node0, f"python3 -c {shlex.quote(rewrite.format(change=change))} {copy}/kubeplay.json")
        code, out = sh(node0, f"kubeplay install -c /root/config.yaml --bundle {copy} 2>&1")
        assert code == 2, out
        assert "preflight found" in out and expect in out


def test_busy_port_is_named_with_its_process(installed: tuple[LabNode, LabNode, str], bundle: Path) -> None:
    _, node1, _ = installed
    node1.copy_in(bundle, BUNDLE_IN_NODE)
    node1.copy_in(_config_file(bundle.parent, node1.ip), "/root/config.yaml")
    ok(node1, "nohup python3 -m http.server 8080 >/dev/null 2>&1 & echo $! > /root/http.pid")
    try:
        deadline = time.monotonic() + 30
        while sh(node1, "grep -q ':1F90 .* 0A ' /proc/net/tcp /proc/net/tcp6")[0] != 0:
            assert time.monotonic() < deadline, "http.server did not listen"
            time.sleep(0.2)
        code, out = sh(node1, f"{BUNDLE_IN_NODE}/install.sh -c /root/config.yaml 2>&1", timeout=600)
        pid = ok(node1, "cat /root/http.pid").strip()
        assert code == 2, out
        assert f"port 8080 is in use by python3 (pid {pid}" in out
        assert "kubeplay needs it for nginx (files, repos, CA over HTTP)" in out
        assert ok(node1, "ls /etc/systemd/system | grep -c kubeplay || true").strip() == "0", "nothing installed"
    finally:
        sh(node1, "kill $(cat /root/http.pid)")


def test_uninstall_then_kill_9_mid_install_then_rerun(installed: tuple[LabNode, LabNode, str]) -> None:
    node0, _, _ = installed
    hosts_before = ok(node0, "grep -v kubeplay /etc/hosts | grep -v " + DOMAIN)
    out = ok(node0, "kubeplay uninstall --purge-packages 2>&1", timeout=600)
    assert "uninstalled" in out
    leftovers = ok(
        node0,
        "ls /etc/systemd/system /etc/apt/sources.list.d /usr/local/share/ca-certificates; "
        "test -e /etc/kubeplay && echo ETC; test -e /var/lib/kubeplay && echo STATE; true",
    )
    assert "kubeplay" not in leftovers and "ETC" not in leftovers and "STATE" not in leftovers
    assert DOMAIN not in ok(node0, "cat /etc/hosts")
    assert sh(node0, "test -e /etc/ssl/certs/kubeplay-rootCA.pem")[0] != 0, "CA no longer trusted"
    assert ok(node0, "cat /etc/hosts") == hosts_before
    assert sh(node0, "dpkg -s docker-registry")[0] != 0, "--purge-packages removed what install added"
    assert ok(node0, "systemctl is-active chrony || true").strip() != "failed"

    # kill -9 while dpkg installs the packages, then the same command again completes. install.sh execs
    # kubeplay, so the recorded PID is kubeplay itself; apt-get and dpkg carry on as orphans.
    ok(
        node0,
        f"nohup {BUNDLE_IN_NODE}/install.sh -c /root/config.yaml > /root/first.log 2>&1 & echo $! > /root/first.pid",
    )
    deadline = time.monotonic() + 300
    while sh(node0, "pgrep -f 'dpkg --status-f[d]'")[0] != 0:  # dpkg run by apt-get install, not a query
        assert time.monotonic() < deadline, ok(node0, "cat /root/first.log")
        time.sleep(0.1)
    ok(node0, "kill -9 $(cat /root/first.pid)")
    status = ok(node0, "kubeplay status --json 2>/dev/null || true")
    steps = json.loads(status[status.index("{") : status.rindex("}") + 1])["steps"]
    assert [name for name, finished in steps.items() if finished] == ["preflight"], steps

    code, events = sh(
        node0,
        f"KUBEPLAY_SKIP_VERIFY=1 KUBEPLAY_JSON_EVENTS=1 {BUNDLE_IN_NODE}/install.sh -c /root/config.yaml "
        "2>/root/rerun.log",
        timeout=900,
    )
    out = ok(node0, "cat /root/rerun.log")
    assert code == 0, out
    statuses = step_statuses(events)
    # The step the kill interrupted, and every one after it, runs; none is taken as already done.
    assert list(statuses) == STEP_ORDER
    assert all(s[-1] == "done" and "skipped" not in s for s in statuses.values()), statuses
    assert "✓ health: registry /v2/ over TLS" in out
    assert ok(node0, "dpkg --audit").strip() == ""
    query = ok(
        node0,
        "dpkg-query -W -f='${Package}=${Status};' nginx-light nginx chrony docker-registry curl 2>/dev/null || true",
    )
    installed = {p.split("=")[0] for p in query.split(";") if p.endswith("=install ok installed")}
    assert {"chrony", "docker-registry", "curl"} <= installed and installed & {"nginx-light", "nginx"}, query
    assert ok(node0, "systemctl is-active kubeplay-registry kubeplay-nginx").split() == ["active", "active"]
    assert ok(node0, "test -e /usr/sbin/policy-rc.d && echo LEFT || echo gone").strip() == "gone"


STEP_ORDER = ["preflight", "os-packages", "serve", "tools", "certs", "trust", "hosts", "registry", "nginx", "chrony"]
STEP_ORDER += ["services", "health"]


def step_statuses(stdout: str) -> dict[str, list[str]]:
    """Step name -> its statuses in order, from `--json-events` output (step events, see the README)."""
    out: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "step":
                out.setdefault(str(event["step"]), []).append(str(event["status"]))
    return out
