"""Lab rehearsal of trust: a signed bundle (SHA256SUMS.sig) whose image came with upstream cosign artifacts.

On a lab node, install.sh with an allowed_signers file that lists another key refuses the bundle (exit 2,
naming the signer, nothing installed); with the builder's key it installs. From a second node, as a
cluster node would, the image's `.sig` and referrers tags are fetchable by the registry domain over TLS,
byte for byte what upstream published."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kubeplay.bundle.manifest import read_manifest
from kubeplay.bundle.trust import NAMESPACE, generate_key, load_private_key, sign_bundle
from kubeplay.lab.nodes import Lab, LabNode
from kubeplay.lab.upstream import UpstreamSimulator

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.e2e.conftest import (
    BUNDLE_IN_NODE,
    DEPLOY_PACKAGES,
    DOMAIN,
    INSTALL_MARKS,
    NSPAWN_ARGS,
    build_for_node,
    ok,
    require_bookworm_mirror,
    sh,
)

pytestmark = INSTALL_MARKS

PACKAGES = DEPLOY_PACKAGES
APP = "registry.k8s.io/kp-trust/app:1.0"
CONFIG = f"""\
compose:
  internal_ip:
  nginx_http_port: 8080
  registry_domain: {DOMAIN}
  allowed_signers: /root/allowed_signers
inventory:
  all:
    hosts:
      node1: {{ansible_host: NODE1_IP}}
"""


def _allowed(path: Path, public: Path, principal: str) -> Path:
    words = public.read_text().split()
    path.write_text(f'{principal} namespaces="{NAMESPACE}" {words[0]} {words[1]}\n')
    return path


@pytest.fixture(scope="module")
def lab(make_lab: Callable[..., Lab]) -> Lab:
    return make_lab(2, nspawn_args=NSPAWN_ARGS)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, lab: Lab) -> tuple[Path, dict[str, str]]:
    """The signed bundle, and the digest upstream served for each signature tag it should carry."""
    require_bookworm_mirror()
    root = tmp_path_factory.mktemp("trust-bundle")
    with UpstreamSimulator(root / "upstream") as sim:
        info = sim.push_image(APP, ["amd64", "arm64"])
        amd64 = info.manifests["linux/amd64"]
        sim.publish_signatures(info, [amd64])
        hexd = amd64.removeprefix("sha256:")
        build_for_node(root, lab.nodes[0], sim, PACKAGES, images=[APP])
    generate_key(root / "keys/builder", "builder@example")
    generate_key(root / "keys/other", "other@example")
    sign_bundle(root / "bundle", load_private_key(root / "keys/builder"))
    storage = root / "bundle/registry/docker/registry/v2/repositories"
    record = read_manifest(root / "bundle").images[0]
    tags = {}
    for tag in (f"sha256-{hexd}.sig", f"sha256-{hexd}"):
        tags[tag] = (storage / record.repository / "_manifests/tags" / tag / "current/link").read_text().strip()
    return root / "bundle", tags


@pytest.fixture(scope="module")
def nodes(lab: Lab, built: tuple[Path, dict[str, str]]) -> tuple[LabNode, LabNode]:
    bundle, _ = built
    node0, node1 = lab.nodes
    node0.copy_in(bundle, BUNDLE_IN_NODE)
    config = bundle.parent / "config.yaml"
    config.write_text(CONFIG.replace("NODE1_IP", node1.ip))
    node0.copy_in(config, "/root/config.yaml")
    return node0, node1


def test_install_sh_refuses_another_signer_then_installs_for_the_builder(
    nodes: tuple[LabNode, LabNode], built: tuple[Path, dict[str, str]]
) -> None:
    node0, node1 = nodes
    bundle, tags = built
    keys = bundle.parent / "keys"
    node0.copy_in(
        _allowed(bundle.parent / "other_signers", keys / "other.pub", "other@example"), "/root/allowed_signers"
    )
    code, output = sh(node0, f"{BUNDLE_IN_NODE}/install.sh -c /root/config.yaml 2>&1", timeout=900)
    assert code == 2, output
    assert "the bundle is signed by ED25519 key SHA256:" in output and "does not allow" in output
    assert sh(node0, "test -e /opt/kubeplay/venv")[0] != 0  # refused before anything was installed

    node0.copy_in(
        _allowed(bundle.parent / "builder_signers", keys / "builder.pub", "builder@example"), "/root/allowed_signers"
    )
    output = ok(node0, f"{BUNDLE_IN_NODE}/install.sh -c /root/config.yaml 2>&1", timeout=900)
    assert 'signed: Good "kubeplay-bundle" signature for builder@example' in output

    # node1, as a cluster node: the CA, then the signature artifacts by the registry domain
    http = f"http://{node0.ip}:8080"
    fetch = "import sys,urllib.request as u; open(sys.argv[2],'wb').write(u.urlopen(sys.argv[1]).read())"
    ok(node1, f"python3 -c {shlex.quote(fetch)} {http}/certs/rootCA.crt /root/rootCA.crt")
    ok(node1, f"echo '{node0.ip} {DOMAIN}' >> /etc/hosts")
    record = read_manifest(bundle).images[0]
    get = (
        "import ssl,sys,urllib.request as u; c=ssl.create_default_context(cafile='/root/rootCA.crt'); "
        "r=u.Request(sys.argv[1], headers={'Accept': 'application/vnd.oci.image.manifest.v1+json,"
        "application/vnd.oci.image.index.v1+json'}); sys.stdout.buffer.write(u.urlopen(r, context=c).read())"
    )
    for tag, digest in tags.items():
        url = f"https://{DOMAIN}/v2/{record.repository}/manifests/{tag}"
        body = ok(node1, f"python3 -c {shlex.quote(get)} {url} | sha256sum")
        assert "sha256:" + body.split()[0] == digest, tag
