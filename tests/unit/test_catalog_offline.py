"""The offline variables send every download to exactly where the bundle puts it."""

from __future__ import annotations

from typing import Any

from kubeplay.catalog.examples import example_tree_path
from kubeplay.catalog.offline import offline_vars, redirect_image_repo, redirect_url
from kubeplay.catalog.planner import make_plan
from kubeplay.catalog.source import load_tree
from kubeplay.config.bundle import BundleSpec

TREE = load_tree(example_tree_path())
FILES_REPO = "https://10.0.0.2:8443/files"
REGISTRY = "10.0.0.2:5443"


def spec(**fields: Any) -> BundleSpec:
    return BundleSpec.model_validate({"kubespray": {"version": "v2.31.0-example", "source": "x"}, **fields})


def test_roots_are_redirected_and_derived_variables_left_alone() -> None:
    plan = make_plan(spec(), TREE)
    assert plan.offline_vars["github_url"] == "{{ files_repo }}/github.com"
    assert plan.offline_vars["dl_k8s_io_url"] == "{{ files_repo }}/dl.k8s.io"
    assert plan.offline_vars["get_helm_url"] == "{{ files_repo }}/get.helm.sh"
    assert plan.offline_vars["argocd_install_url"] == (
        "{{ files_repo }}/raw.githubusercontent.com/argoproj/argo-cd/v{{ argocd_version }}/manifests/install.yaml"
    )
    assert plan.offline_vars["kube_image_repo"] == "{{ registry_host }}/library/registry.k8s.io"
    assert plan.offline_vars["docker_image_repo"] == "{{ registry_host }}/library/docker.io"
    assert plan.offline_vars["gcp_pd_csi_image_repo"] == "{{ registry_host }}/library/gke.gcr.io"
    for derived in ("kubelet_download_url", "kubeadm_image_repo", "pod_infra_image_repo", "etcd_image_repo"):
        assert derived not in plan.offline_vars


def test_concrete_values_fill_the_placeholders() -> None:
    plan = make_plan(spec(registry_project="corp"), TREE)
    values = offline_vars(plan, files_repo=FILES_REPO + "/", registry_host=REGISTRY)
    assert values["files_repo"] == FILES_REPO and values["registry_host"] == REGISTRY
    assert values["github_url"] == f"{FILES_REPO}/github.com"
    assert values["quay_image_repo"] == f"{REGISTRY}/corp/quay.io"
    assert offline_vars(plan)["github_url"] == "{{ files_repo }}/github.com"
    assert offline_vars(TREE, project="corp")["quay_image_repo"] == "{{ registry_host }}/corp/quay.io"


def test_applying_the_offline_vars_points_every_download_at_its_bundle_location() -> None:
    base = spec(arches=["amd64", "arm64"], kube_network_plugin=["calico", "cilium"])
    plan = make_plan(base, TREE, all_entries=True)
    redirected = make_plan(
        base, TREE, all_entries=True, extra_vars=offline_vars(plan, files_repo=FILES_REPO, registry_host=REGISTRY)
    )
    assert redirected.problems == ()
    by_path = {(f.arch, f.path): f for f in plan.files}
    assert len(redirected.files) == len(plan.files)
    for item in redirected.files:
        assert item.url.startswith(FILES_REPO + "/")
        original = by_path[(item.arch, "files/" + item.url.removeprefix(FILES_REPO + "/"))]
        assert original.checksum == item.checksum
    bundle_refs = {f"{REGISTRY}/{i.bundle_repository}:{i.tag}" for i in plan.images}
    assert {i.upstream for i in redirected.images} == bundle_refs


def test_user_mirror_of_a_root_is_redirected_under_the_mirror_host() -> None:
    plan = make_plan(spec(kubespray_vars={"github_url": "https://gh-mirror.example/github"}), TREE)
    assert plan.offline_vars["github_url"] == "{{ files_repo }}/gh-mirror.example/github"
    assert any(f.path.startswith("files/gh-mirror.example/github/") for f in plan.files)


def test_redirect_rules() -> None:
    assert redirect_url("https://dl.k8s.io") == "{{ files_repo }}/dl.k8s.io"
    assert redirect_url("https://dl.k8s.io/release/{{ kube_version }}/kubelet") == (
        "{{ files_repo }}/dl.k8s.io/release/{{ kube_version }}/kubelet"
    )
    assert redirect_url("{{ github_url }}/x") is None
    assert redirect_url("https://{{ host }}:2380") is None
    assert redirect_image_repo("mcr.microsoft.com/k8s/csi", "library") == (
        "{{ registry_host }}/library/mcr.microsoft.com/k8s/csi"
    )
    assert redirect_image_repo("busybox", "library") == "{{ registry_host }}/library/docker.io/library/busybox"
    assert redirect_image_repo("{{ quay_image_repo }}/calico/node", "library") is None
