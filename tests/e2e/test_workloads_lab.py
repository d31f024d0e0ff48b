"""Lab rehearsal of bundle.yaml `images:`, `files:` and `charts:`: a real `kubeplay build` against the
simulator (an extra multi-arch image, a file, a chart from an HTTP chart repository with a dependency, an
OCI chart; containerd in the bundle's OS repo), installed on one lab node. From a second node, as a
cluster node would: containerd pulls the extra image by the registry domain over TLS, the file comes by
URL, and every chart is fetchable both as an OCI artifact and through the generated index.yaml, with the
same digest both ways."""

from __future__ import annotations

import hashlib
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from kubeplay.bundle.manifest import read_manifest
from kubeplay.lab.nodes import Lab, LabNode
from kubeplay.lab.upstream import UpstreamSimulator
from kubeplay.lab.upstream.charts import build_chart

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.e2e.conftest import (
    BUNDLE_IN_NODE,
    CONFIG,
    DEPLOY_PACKAGES,
    DOMAIN,
    INSTALL_MARKS,
    NSPAWN_ARGS,
    build_for_node,
    require_bookworm_mirror,
)

pytestmark = INSTALL_MARKS

PACKAGES = [*DEPLOY_PACKAGES, "containerd"]
REPO = "https://charts.example.org/stable"
OCI = "oci://ghcr.io/kp-lab/charts"
APP = "ghcr.io/kp-lab/app:1.0"
FILE_URL = "https://downloads.example.org/kp-lab/tool.tar.gz"


def ok(node: LabNode, script: str, timeout: float = 300) -> str:
    r = node.run(["sh", "-c", script], timeout=timeout)
    assert r.returncode == 0, f"{node.name}: {script}\n{r.stdout}{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def lab(make_lab: Callable[..., Lab]) -> Lab:
    return make_lab(2, nspawn_args=NSPAWN_ARGS)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, lab: Lab) -> Path:
    require_bookworm_mirror()
    root = tmp_path_factory.mktemp("workloads-bundle")
    with UpstreamSimulator(root / "upstream") as sim:
        sim.push_image(APP, ["amd64", "arm64"], variant_arm64=True)
        sim.push_image("docker.io/kp-lab/redis:7.2.4", ["amd64", "arm64"])
        sim.push_image("ghcr.io/kp-lab/oci-app:3.1", ["amd64", "arm64"])
        sim.add_file(FILE_URL, b"the workload's tool\n" * 1000)
        web = build_chart(
            "web",
            "1.2.0",
            values={"image": APP},
            dependencies=[{"name": "redis", "version": "0.5.0", "repository": REPO}],
        )
        redis = build_chart(
            "redis", "0.5.0", values={"image": {"registry": "docker.io", "repository": "kp-lab/redis", "tag": "7.2.4"}}
        )
        ociapp = build_chart(
            "ociapp",
            "3.1.0",
            app_version="3.1",
            values={"image": {"repository": "ghcr.io/kp-lab/oci-app"}},
            templates={"deploy.yaml": "image: {{ .Values.image.repository }}:{{ .Chart.AppVersion }}\n"},
        )
        sim.add_chart_repo(REPO, [web, redis])
        sim.push_chart(OCI, ociapp)
        return build_for_node(
            root,
            lab.nodes[0],
            sim,
            PACKAGES,
            images=[APP],
            files=[{"url": FILE_URL, "sha256": hashlib.sha256(b"the workload's tool\n" * 1000).hexdigest()}],
            charts=[
                {"name": "web", "repo": REPO, "version": "1.2.0"},
                {"name": "ociapp", "repo": OCI, "version": "3.1.0"},
            ],
        )


@pytest.fixture(scope="module")
def nodes(lab: Lab, bundle: Path) -> tuple[LabNode, LabNode]:
    node0, node1 = lab.nodes
    node0.copy_in(bundle, BUNDLE_IN_NODE)
    config = bundle.parent / "config.yaml"
    config.write_text(CONFIG.replace("NODE1_IP", node1.ip))
    node0.copy_in(config, "/root/config.yaml")
    ok(node0, f"{BUNDLE_IN_NODE}/install.sh -c /root/config.yaml 2>&1", timeout=900)
    # node1: the CA, the bundle's apt repo (signature checked), then curl and containerd from it
    http = f"http://{node0.ip}:8080"
    fetch = "import sys,urllib.request as u; open(sys.argv[2],'wb').write(u.urlopen(sys.argv[1]).read())"
    ok(node1, "mkdir -p /etc/apt/keyrings")
    ok(node1, f"python3 -c {shlex.quote(fetch)} {http}/certs/rootCA.crt /root/rootCA.crt")
    ok(node1, f"python3 -c {shlex.quote(fetch)} {http}/repos/kubeplay-archive-keyring.gpg /etc/apt/keyrings/kp.gpg")
    sources = f"Types: deb\nURIs: {http}/repos/apt/debian/bookworm\nSuites: bookworm\nComponents: main\nSigned-By: /etc/apt/keyrings/kp.gpg\n"
    ok(node1, f"printf %s {shlex.quote(sources)} > /root/kp.sources")
    apt = "apt-get -o Dir::Etc::SourceList=/root/kp.sources -o Dir::Etc::SourceParts=- "
    ok(node1, apt + "update 2>&1")
    ok(
        node1,
        "DEBIAN_FRONTEND=noninteractive " + apt + "install -y -q --no-install-recommends curl containerd 2>&1",
        900,
    )
    ok(node1, f"echo '{node0.ip} {DOMAIN}' >> /etc/hosts")
    return node0, node1


def test_containerd_pulls_the_extra_image_by_the_registry_domain(nodes: tuple[LabNode, LabNode], bundle: Path) -> None:
    _, node1 = nodes
    record = next(r for r in read_manifest(bundle).images if r.variable == "bundle.yaml images[0]")
    hosts = f'server = "https://{DOMAIN}"\n[host."https://{DOMAIN}"]\n  capabilities = ["pull", "resolve"]\n  ca = "/root/rootCA.crt"\n'
    ok(
        node1,
        f"mkdir -p /etc/containerd/certs.d/{DOMAIN} && printf %s {shlex.quote(hosts)} > /etc/containerd/certs.d/{DOMAIN}/hosts.toml",
    )
    ok(node1, "systemctl restart containerd && sleep 1 && systemctl is-active containerd")
    ref = f"{DOMAIN}/library/ghcr.io/kp-lab/app:1.0"
    pulled = ok(
        node1,
        f"ctr -n k8s.io images pull --snapshotter native --hosts-dir /etc/containerd/certs.d {ref} 2>&1",
        timeout=300,
    )
    assert "done" in pulled
    listed = ok(node1, f"ctr -n k8s.io images ls name=={ref}")
    # the tag serves upstream's index unchanged (its arm64 manifest is not in this amd64 bundle): containerd
    # resolves it and pulls the amd64 platform, and the image keeps upstream's digest
    assert record.cut_index is not None and record.digest == record.upstream_digest
    assert record.digest in listed


def test_file_and_charts_both_ways_with_matching_digests(nodes: tuple[LabNode, LabNode], bundle: Path) -> None:
    node0, node1 = nodes
    http = f"http://{node0.ip}:8080"
    curl = "curl -sSf --cacert /root/rootCA.crt"
    manifest = read_manifest(bundle)
    tool = next(f for f in manifest.files if f.variable == "bundle.yaml files[0]")
    assert ok(node1, f"{curl} {http}/{tool.path} | sha256sum").split()[0] == tool.sha256
    index = yaml.safe_load(ok(node1, f"{curl} {http}/files/charts/index.yaml"))
    assert sorted(index["entries"]) == ["ociapp", "redis", "web"]
    for chart in manifest.charts:
        (entry,) = index["entries"][chart.name]
        by_repo = ok(node1, f"{curl} {http}/files/charts/{entry['urls'][0]} | sha256sum").split()[0]
        assert by_repo == entry["digest"] == chart.sha256
        base = f"https://{DOMAIN}/v2/{chart.repository}"
        accept = "application/vnd.oci.image.manifest.v1+json"
        artifact = yaml.safe_load(ok(node1, f"{curl} -H 'Accept: {accept}' {base}/manifests/{chart.tag}"))
        layer = artifact["layers"][0]["digest"]
        assert layer == f"sha256:{chart.sha256}"
        assert ok(node1, f"{curl} {base}/blobs/{layer} | sha256sum").split()[0] == chart.sha256
