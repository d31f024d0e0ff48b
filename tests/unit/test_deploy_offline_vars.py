"""kubespray's offline variables from a bundle: golden file, kube_version refusal, and containerd's hosts.toml
rendered with kubespray's own template (tests/unit/golden/deploy/; UPDATE_GOLDEN=1 rewrites the golden file)."""

from __future__ import annotations

import os
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from tests.conftest import require_shared, skip_or_fail

from kubeplay.deploy.offline_vars import DeployEndpoint, offline_vars, render_placeholders
from kubeplay.errors import BadInput

GOLDEN = Path(__file__).parent / "golden" / "deploy"
ENDPOINT = DeployEndpoint(
    internal_ip="10.1.0.10", nginx_http_port=8080, registry_domain="kube.registry.local", image_project="library"
)
IMAGES = [
    ("registry.k8s.io/pause:3.10.1", "library/registry.k8s.io/pause"),
    ("quay.io/calico/node:v3.30.3", "library/quay.io/calico/node"),
    ("docker.io/library/nginx:1.28.0-alpine", "library/docker.io/library/nginx"),
]
CATALOG = {
    "kubeadm_download_url": "{{ files_repo }}/dl.k8s.io/release/v{{ kube_version }}/bin/linux/{{ image_arch }}/kubeadm",
    "argocd_install_url": "{{ files_repo }}/raw.githubusercontent.com/argoproj/argo-cd/v{{ argocd_version }}/install.yaml",
}


def build(config: dict[str, Any] | None = None) -> dict[str, Any]:
    return offline_vars(
        ENDPOINT,
        "v1.33.4",
        catalog_vars=CATALOG,
        image_repositories=IMAGES,
        config_vars=config or {},
        config_defaults={"download_container": False},
    )


def test_offline_vars_match_golden_file() -> None:
    got = yaml.safe_dump(build({"kube_network_plugin": "calico"}), sort_keys=True)
    golden = GOLDEN / "offline_vars.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got)
    assert got == golden.read_text()


def test_every_download_and_image_points_at_the_deploy_node() -> None:
    rendered = render_placeholders(build(), ENDPOINT)
    for name in ("github_url", "dl_k8s_io_url", "storage_googleapis_url", "get_helm_url", "kubeadm_download_url"):
        assert rendered[name].startswith("http://10.1.0.10:8080/files/"), name
    for name in ("kube_image_repo", "gcr_image_repo", "docker_image_repo", "quay_image_repo", "github_image_repo"):
        assert rendered[name].startswith("kube.registry.local/library/"), name
    assert rendered["kube_image_repo"] == "kube.registry.local/library/registry.k8s.io"
    assert rendered["kube_version"] == "1.33.4"


def test_a_different_kube_version_in_config_is_refused() -> None:
    with pytest.raises(BadInput) as info:
        build({"kube_version": "1.32.0"})
    assert "kubespray.kube_version is 1.32.0 but the bundle carries Kubernetes 1.33.4" in info.value.message
    assert "set it to 1.33.4" in (info.value.hint or "")
    assert build({"kube_version": "v1.33.4"})["kube_version"] == "1.33.4"


def test_user_kubespray_vars_win_over_redirects() -> None:
    got = build({"kube_image_repo": "harbor.example.org/k8s", "kube_network_plugin": "cilium"})
    assert got["kube_image_repo"] == "harbor.example.org/k8s"
    assert got["kube_network_plugin"] == "cilium"


def test_non_default_registry_port_is_part_of_registry_host() -> None:
    endpoint = DeployEndpoint("10.1.0.10", 8080, "kube.registry.local", registry_https_port=8443)
    assert endpoint.registry_host == "kube.registry.local:8443"


def _flatten(value: Any) -> list[Any]:
    out: list[Any] = []
    for item in value:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def _kubespray_template(tmp_path: Path) -> Path:
    archives = sorted(require_shared("upstream", "kubespray").glob("kubespray-*.tar.gz"))
    if not archives:
        skip_or_fail("../shared has no kubespray release to read the containerd template from")
    with tarfile.open(archives[-1]) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("containerd/templates/hosts.toml.j2"))
        data = tar.extractfile(member)
        assert data is not None
        out = tmp_path / "hosts.toml.j2"
        out.write_bytes(data.read())
    return out


def test_containerd_hosts_toml_from_kubespray_template_trusts_the_bundle_ca(tmp_path: Path) -> None:
    env = jinja2.Environment(autoescape=False)
    env.filters["flatten"] = _flatten  # Ansible's filter, as the template uses it
    template = env.from_string(_kubespray_template(tmp_path).read_text())
    mirrors = render_placeholders(build()["containerd_registries_mirrors"], ENDPOINT)
    by_prefix = {m["prefix"]: tomllib.loads(template.render(item=m)) for m in mirrors}
    own = by_prefix["kube.registry.local"]
    assert own["server"] == "https://kube.registry.local"
    host = own["host"]["https://kube.registry.local"]
    assert host["ca"] == ["/etc/kubeplay-node/rootCA.crt"]
    assert host["skip_verify"] is False
    docker = by_prefix["docker.io"]["host"]["https://kube.registry.local/v2/library/docker.io"]
    assert docker["override_path"] is True
    assert set(by_prefix) == {"kube.registry.local", "registry.k8s.io", "quay.io", "docker.io"}
