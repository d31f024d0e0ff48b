"""The demo's checks: each passes on the evidence a healthy air-gapped node gives and fails, naming the
problem, on the evidence of a node that leaks (a foreign apt source, a route out, a wrong file, a CA it
does not trust, time from elsewhere, an image with another digest, a fetch missing from the log).

The first tests feed real command output shapes to the pure check functions; the e2e test at the end runs
the demo's node probe on a real lab node and checks the verdicts against what was done to that node.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kubeplay.lab.demo import checks
from kubeplay.lab.demo.deploy_outcome import explain_stop, is_transient, parse_deploy_output
from kubeplay.lab.demo.probes import run_probe
from kubeplay.lab.nodes import Lab, unavailable_reason

DEPLOY = "10.213.0.10"
REPO = f"http://{DEPLOY}:8080/repos/apt/debian/bookworm"
SUBNET = "10.213.0.0/24"

POLICY = f"""Package files:
 100 /var/lib/dpkg/status
     release a=now
 500 {REPO} bookworm/main amd64 Packages
     release o=kubeplay,a=bookworm,n=bookworm,c=main,b=amd64
     origin {DEPLOY}
Pinned packages:
"""
SOURCES = {"/etc/apt/sources.list.d/kubeplay-node.sources": f"Types: deb\nURIs: {REPO}\nSuites: bookworm\n"}
INDEX = {("socat", "1.7.4.4-2"): "socat_1.7.4.4-2_amd64.deb", ("containerd", "1.6.20~ds1-1+b1"): "containerd.deb"}
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfzCCASWgAwIBAgIU\nQUJD\n-----END CERTIFICATE-----\n"
TRACKING = f"""Reference ID    : 0AD5000A ({DEPLOY})
Stratum         : 11
Ref time (UTC)  : Fri Nov 27 20:50:01 2026
"""
SOURCES_OK = f"""MS Name/IP address         Stratum Poll Reach LastRx Last sample
===============================================================================
^* {DEPLOY}                   10   6    17     3   -12us[  -20us] +/-  120us
"""
LOG = f"""{DEPLOY.replace(".10", ".11")} - - [27/Nov/2026:20:49:58 +0000] "GET /repos/apt/debian/bookworm/pool/main/s/socat/socat_1.7.4.4-2_amd64.deb HTTP/1.1" 200 374256 "-" "Debian APT-HTTP/1.3 (2.6.1)"
10.213.0.11 - - [27/Nov/2026:20:50:10 +0000] "GET /files/dl.k8s.io/release/v1.35.4/bin/linux/amd64/kubeadm HTTP/1.1" 200 8192 "-" "Python-urllib/3.11"
10.213.0.11 - - [27/Nov/2026:20:50:12 +0000] "HEAD /v2/library/pause/manifests/3.10.1 HTTP/1.1" 200 0 "-" "containerd/1.6.20"
10.213.0.11 - - [27/Nov/2026:20:50:12 +0000] "GET /v2/library/pause/manifests/sha256:{"a" * 64} HTTP/1.1" 200 530 "-" "containerd/1.6.20"
10.213.0.11 - - [27/Nov/2026:20:50:12 +0000] "GET /v2/library/pause/blobs/sha256:{"b" * 64} HTTP/1.1" 200 65536 "-" "containerd/1.6.20"
10.213.0.12 - - [27/Nov/2026:20:50:13 +0000] "GET /files/dl.k8s.io/release/v1.35.4/bin/linux/amd64/kubeadm HTTP/1.1" 404 153 "-" "curl/7.88.1"
"""


def test_package_sources_pass_only_when_apt_knows_nothing_but_the_bundle_repo() -> None:
    installed = {"socat": "1.7.4.4-2"}
    args = {"policy": POLICY, "source_files": SOURCES, "installed_new": installed, "repo_index": INDEX}
    good = checks.check_package_sources("node1", repo_url=REPO, **args)  # type: ignore[arg-type]
    assert good.passed and "1 packages installed from it" in good.detail

    foreign = POLICY.replace(" 100 /var", " 500 http://mirror.invalid/debian bookworm/main amd64 Packages\n 100 /var")
    bad = checks.check_package_sources("node1", repo_url=REPO, **{**args, "policy": foreign})  # type: ignore[arg-type]
    assert not bad.passed and "http://mirror.invalid/debian" in bad.detail

    extra = {**SOURCES, "/etc/apt/sources.list": "deb http://mirror.invalid/debian bookworm main\n"}
    bad = checks.check_package_sources("node1", repo_url=REPO, **{**args, "source_files": extra})  # type: ignore[arg-type]
    assert not bad.passed and "/etc/apt/sources.list declares http://mirror.invalid/debian" in bad.detail

    stray = {**installed, "htop": "3.2.2-2"}
    bad = checks.check_package_sources("node1", repo_url=REPO, **{**args, "installed_new": stray})  # type: ignore[arg-type]
    assert not bad.passed and "not in the bundle repo: htop=3.2.2-2" in bad.detail


def test_dpkg_status_diff_and_packages_index() -> None:
    base = "Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b2\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n"
    now = base + "\nPackage: socat\nStatus: install ok installed\nVersion: 1.7.4.4-2\n"
    assert checks.new_packages(checks.parse_dpkg_status(base), checks.parse_dpkg_status(now)) == {"socat": "1.7.4.4-2"}
    index = "Package: socat\nVersion: 1.7.4.4-2\nFilename: pool/main/s/socat/socat_1.7.4.4-2_amd64.deb\nSize: 1\n"
    assert checks.parse_packages_index(index) == {("socat", "1.7.4.4-2"): "socat_1.7.4.4-2_amd64.deb"}


def test_ca_trusted_needs_the_ca_in_the_bundle_and_a_working_tls_request() -> None:
    bundle = "-----BEGIN CERTIFICATE-----\nOTHER\n-----END CERTIFICATE-----\n" + CA_PEM
    assert checks.check_ca_trusted("node1", CA_PEM, bundle, "ok 200").passed
    missing = checks.check_ca_trusted("node1", CA_PEM, bundle.replace("QUJD", "WFla"), "ok 200")
    assert not missing.passed and "not in /etc/ssl/certs/ca-certificates.crt" in missing.detail
    refused = checks.check_ca_trusted("node1", CA_PEM, bundle, "URLError: certificate verify failed")
    assert not refused.passed and "certificate verify failed" in refused.detail


def test_chrony_must_track_and_select_the_deploy_node() -> None:
    ok = checks.check_chrony("node1", DEPLOY, TRACKING, SOURCES_OK)
    assert ok.passed and "stratum 11" in ok.detail
    elsewhere = checks.check_chrony("node1", DEPLOY, TRACKING.replace(DEPLOY, "10.213.0.99"), SOURCES_OK)
    assert not elsewhere.passed and "10.213.0.99" in elsewhere.detail
    unsynced = checks.check_chrony("node1", DEPLOY, "Reference ID    : 00000000 ()\n", SOURCES_OK.replace("^*", "^?"))
    assert not unsynced.passed


def test_images_need_every_reference_with_the_bundle_digest() -> None:
    expected = {"kube.registry.local/library/pause:3.10.1": "sha256:" + "a" * 64}
    assert checks.check_images("node1", expected, dict(expected), {}).passed
    other = checks.check_images("node1", expected, {k: "sha256:" + "c" * 64 for k in expected}, {})
    assert not other.passed and "the bundle serves sha256:aaaa" in other.detail
    failed = checks.check_images(
        "node1", expected, {}, {next(iter(expected)): "x509: certificate signed by unknown authority"}
    )
    assert not failed.passed and "unknown authority" in failed.detail
    assert not checks.check_images("node1", {}, {}, {}).passed


def test_files_match_their_manifest_digest() -> None:
    expected = {"files/dl.k8s.io/kubeadm": "ab" * 32}
    assert checks.check_files("node1", expected, dict(expected)).passed
    bad = checks.check_files("node1", expected, {"files/dl.k8s.io/kubeadm": "error: HTTP Error 404"})
    assert not bad.passed and "404" in bad.detail


def test_routes_stay_inside_the_lab_subnet() -> None:
    inside = [{"dst": SUBNET, "dev": "host0"}, {"dst": "fe80::/64", "dev": "host0"}]
    unreachable = (2, "RTNETLINK answers: Network is unreachable")
    assert checks.check_routes("node1", SUBNET, inside, unreachable).passed
    default = checks.check_routes("node1", SUBNET, [*inside, {"dst": "default", "gateway": "10.213.0.1"}], unreachable)
    assert not default.passed and "default via 10.213.0.1" in default.detail
    wider = checks.check_routes("node1", SUBNET, [{"dst": "10.0.0.0/8", "dev": "host0"}], unreachable)
    assert not wider.passed and "10.0.0.0/8" in wider.detail
    lookup = checks.check_routes("node1", SUBNET, inside, (0, "192.0.2.1 via 10.213.0.1 dev host0"))
    assert not lookup.passed and "route lookup" in lookup.detail


def test_access_log_accounts_for_every_fetch_of_a_node() -> None:
    entries = checks.parse_access_log(LOG)
    assert len(entries) == 6
    fetched = checks.fetch_keys(entries, "10.213.0.11")
    expected = {
        "files": {"/files/dl.k8s.io/release/v1.35.4/bin/linux/amd64/kubeadm"},
        "packages": {"deb:socat_1.7.4.4-2_amd64.deb"},
        "image manifests and blobs": {"blob:sha256:" + "a" * 64, "blob:sha256:" + "b" * 64},
    }
    assert checks.check_fetches("node1", expected, fetched).passed
    # node2's file request failed (404): it does not count as fetched.
    node2 = checks.check_fetches("node2", expected, checks.fetch_keys(entries, "10.213.0.12"))
    assert not node2.passed and "files /files/dl.k8s.io" in node2.detail and "packages deb:socat" in node2.detail
    assert checks.check_log_clients("node0", SUBNET, entries).passed
    stranger = checks.parse_access_log(LOG.replace("10.213.0.12", "192.0.2.7"))
    assert not checks.check_log_clients("node0", SUBNET, stranger).passed


def test_deploy_output_names_where_it_stopped_and_why() -> None:
    text = "\n".join(
        [
            '{"event": "step", "command": "deploy", "step": "node-prep", "status": "started"}',
            '{"event": "step", "command": "deploy", "step": "node-prep", "status": "done", "seconds": 41.5}',
            '{"event": "step", "command": "deploy", "step": "container-engine", "status": "started"}',
            "error: container-engine: task 'containerd | Ensure containerd is started and enabled' failed on node1:",
            "Unable to start service containerd: Job for containerd.service failed",
            "  stopped at container-engine: node1 is a systemd-nspawn container: cgroups: no delegated controllers",
            "hint: run the same command again to resume at container-engine; full log: /var/lib/kubeplay/deploy/x.log",
        ]
    )
    outcome = parse_deploy_output(text, 1)
    assert outcome.done == {"node-prep": 41.5}
    assert outcome.stopped_at == "container-engine"
    assert "Job for containerd.service failed" in outcome.message and "stopped at" not in outcome.message
    assert outcome.explained == "node1 is a systemd-nspawn container: cgroups: no delegated controllers"
    assert parse_deploy_output(text.replace("error:", "note:"), 0).completed
    modules = explain_stop("modprobe: FATAL: Module br_netfilter not found in directory /lib/modules/6.1")
    assert modules is not None and modules.startswith("kernel modules")
    reason = explain_stop('Failed to reload sysctl: sysctl: permission denied on key "net.ipv4.ip_forward"')
    assert reason is not None and reason.startswith("kernel parameters")
    assert explain_stop("No package matching 'socat' is available") is None  # a real failure, not a container limit
    assert is_transient(
        "Failed to activate service 'org.freedesktop.hostname1': timed out (service_start_timeout=25000ms)"
    )
    assert not is_transient('sysctl: permission denied on key "net.ipv4.ip_forward"')


# -- e2e: the node probe on a real lab node ----------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_probe_on_a_lab_node_gives_evidence_the_checks_judge(make_lab: Callable[..., Lab], tmp_path: Path) -> None:
    lab = make_lab(1)
    node = lab.nodes[0]
    bridge = lab.record.bridge_ip
    served = tmp_path / "www" / "files" / "dl.k8s.io"
    served.mkdir(parents=True)
    (served / "kubeadm").write_bytes(b"kubeadm stand-in\n" * 100)
    digest = hashlib.sha256((served / "kubeadm").read_bytes()).hexdigest()
    server = subprocess.Popen(
        lab.lab_side([sys.executable, "-m", "http.server", "-b", bridge, "-d", str(tmp_path / "www"), "8080"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        cfg = {
            "mode": "evidence",
            "deploy_ip": bridge,
            "domain": "kube.registry.local",
            "files_base": f"http://{bridge}:8080",
            "files": ["files/dl.k8s.io/kubeadm", "files/dl.k8s.io/missing"],
            "chrony_wait": 0,
        }
        deadline = time.monotonic() + 20
        while True:
            ev = run_probe(node, cfg, timeout=120)
            if not ev["files"]["files/dl.k8s.io/kubeadm"].startswith("error") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=10)
    # A fresh lab node: no route out, no apt source at all, a file served on the lab bridge with its digest.
    assert checks.check_routes(node.name, lab.record.subnet, ev["routes"], tuple(ev["outside_lookup"])).passed
    expected = {"files/dl.k8s.io/kubeadm": digest}
    assert checks.check_files(node.name, expected, ev["files"]).passed
    missing = checks.check_files(node.name, {**expected, "files/dl.k8s.io/missing": "00" * 32}, ev["files"])
    assert not missing.passed and "404" in missing.detail
    # Nothing resolves the registry domain and no CA is trusted: the CA check fails and says why.
    ca = checks.check_ca_trusted(node.name, CA_PEM, ev["trust_bundle"], ev["tls_probe"])
    assert not ca.passed and "TLS GET /v2/ by domain" in ca.detail
    # No time source configured on the node: the chrony check fails.
    assert not checks.check_chrony(node.name, bridge, ev["chrony_tracking"], ev["chrony_sources"]).passed

    # Now make the node leak: a foreign apt source and a default route (route lookups only; nothing is sent).
    node.run("echo 'deb http://mirror.invalid/debian bookworm main' > /etc/apt/sources.list.d/extra.list", check=True)
    netns = lab.record.nodes[0].netns  # the node may not change its own routes; the host can, in its namespace
    subprocess.run(["ip", "-n", netns, "route", "add", "default", "via", bridge], check=True, timeout=30)
    ev = run_probe(node, {**cfg, "files": []}, timeout=120)
    routes = checks.check_routes(node.name, lab.record.subnet, ev["routes"], tuple(ev["outside_lookup"]))
    assert not routes.passed and f"default via {bridge}" in routes.detail
    sources = checks.check_package_sources(
        node.name,
        repo_url=REPO,
        policy=ev["apt_policy"],
        source_files=ev["apt_sources"],
        installed_new={},
        repo_index={},
    )
    assert not sources.passed and "extra.list declares http://mirror.invalid/debian" in sources.detail
