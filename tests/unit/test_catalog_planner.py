"""Plans from the example kubespray tree: what a user sees for each configuration, and the errors."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeplay.catalog.examples import example_tree_path
from kubeplay.catalog.model import Plan
from kubeplay.catalog.planner import make_plan
from kubeplay.catalog.source import load_tree
from kubeplay.config.bundle import BundleSpec
from kubeplay.errors import CatalogError, ConfigError

TREE = load_tree(example_tree_path())
CHECKSUMS = yaml.safe_load((TREE.defaults_role / "vars/main/checksums.yml").read_text())


def spec(**fields: Any) -> BundleSpec:
    return BundleSpec.model_validate({"kubespray": {"version": "v2.31.0-example", "source": "x"}, **fields})


def files_by(plan: Plan) -> dict[tuple[str, str], Any]:
    return {(f.name, f.arch): f for f in plan.files}


def images_by(plan: Plan) -> dict[str, Any]:
    return {i.upstream: i for i in plan.images}


def test_default_plan_for_two_arches() -> None:
    plan = make_plan(spec(arches=["amd64", "arm64"]), TREE)
    assert plan.problems == ()
    assert plan.kube_version == "1.35.2"  # the first key of kubelet_checksums.amd64, as kubespray's default
    assert plan.arches == ("amd64", "arm64")
    files = files_by(plan)
    kubelet = files[("kubelet", "arm64")]
    assert kubelet.url == "https://dl.k8s.io/release/v1.35.2/bin/linux/arm64/kubelet"
    assert str(kubelet.checksum) == CHECKSUMS["kubelet_checksums"]["arm64"]["1.35.2"]
    assert kubelet.path == "files/dl.k8s.io/release/v1.35.2/bin/linux/arm64/kubelet"
    assert kubelet.version == "1.35.2" and kubelet.groups == ("k8s_cluster",)
    assert kubelet.variable == "kubelet_download_url"
    # etcd picks the newest etcd below 3.7 for 1.35 (select('version') on the checksum table keys).
    assert files[("etcd", "amd64")].url.endswith("/v3.6.8/etcd-v3.6.8-linux-amd64.tar.gz")
    # crictl: newest below kube_major_next_version (1.36) — a string built from int arithmetic.
    assert files[("crictl", "amd64")].version == "1.35.0"
    assert {name for name, _ in files} == {
        "etcd", "cni", "kubeadm", "kubelet", "kubectl", "crictl", "runc", "containerd", "calicoctl", "calico_crds",
    }  # fmt: skip
    # The CRDs do not depend on the arch: one noarch entry instead of two copies.
    assert ("calico_crds", "noarch") in files and ("calico_crds", "amd64") not in files
    assert len(plan.files) == 2 * 9 + 1


def test_images_carry_their_arches_and_bundle_names() -> None:
    plan = make_plan(spec(arches=["amd64", "arm64"]), TREE)
    images = images_by(plan)
    assert all(i.arches == ("amd64", "arm64") for i in plan.images)
    assert len(images) == len(plan.images), "one entry per image"
    pause = images["registry.k8s.io/pause:3.10.1"]
    assert (pause.registry, pause.repository, pause.tag) == ("registry.k8s.io", "pause", "3.10.1")
    assert pause.bundle_repository == "library/registry.k8s.io/pause"
    nginx = images["docker.io/library/nginx:1.28.2-alpine"]
    assert nginx.bundle_repository == "library/docker.io/library/nginx"
    assert images["registry.k8s.io/coredns/coredns:v1.12.4"].variable == "coredns_image_repo"


def test_kubeadm_control_plane_images_are_included() -> None:
    plan = make_plan(spec(kube_version="1.34.4"), TREE)
    images = images_by(plan)
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        image = images[f"registry.k8s.io/{name}:v1.34.4"]
        assert image.name == f"kubeadm_{name}" and image.variable == "kubeadm_image_repo"
        assert image.bundle_repository == f"library/registry.k8s.io/{name}"
    # pause follows kube_version through role vars (pod_infra_supported_versions).
    assert "registry.k8s.io/pause:3.10" in images
    assert not any("etcd" in ref for ref in images), "host etcd is a binary, kubeadm pulls no etcd image"


def test_etcd_deployed_by_kubeadm_is_an_image_not_a_binary() -> None:
    plan = make_plan(spec(kubespray_vars={"etcd_deployment_type": "kubeadm"}), TREE)
    assert "quay.io/coreos/etcd:v3.6.8" in images_by(plan)
    assert not any(f.name == "etcd" for f in plan.files)


def test_several_configurations_are_one_union_without_duplicates() -> None:
    calico = make_plan(spec(), TREE)
    cilium_crio = make_plan(spec(kube_network_plugin="cilium", container_manager="crio"), TREE)
    union = make_plan(spec(kube_network_plugin=["calico", "cilium"], container_manager=["containerd", "crio"]), TREE)
    assert {f.url for f in union.files} == {f.url for f in calico.files} | {f.url for f in cilium_crio.files}
    assert set(images_by(union)) == set(images_by(calico)) | set(images_by(cilium_crio))
    assert len(union.images) == len(images_by(union))
    assert "quay.io/cilium/cilium:v1.19.1" in images_by(cilium_crio)
    assert not {"containerd", "runc", "calicoctl"} & {f.name for f in cilium_crio.files}


def test_all_is_a_superset_with_disabled_entries_and_variants() -> None:
    default = make_plan(spec(arches=["amd64"]), TREE)
    everything = make_plan(spec(arches=["amd64"]), TREE, all_entries=True)
    assert {f.url for f in default.files} < {f.url for f in everything.files}
    assert set(images_by(default)) < set(images_by(everything))
    urls = {f.url for f in everything.files}
    assert "https://get.helm.sh/helm-v3.18.4-linux-amd64.tar.gz" in urls  # helm_enabled: false
    assert "https://raw.githubusercontent.com/argoproj/argo-cd/v2.14.5/manifests/install.yaml" in urls
    assert any("containerd-static-2.2.1" in url for url in urls)  # containerd_static_binary variant
    images = images_by(everything)
    assert {"ghcr.io/kube-vip/kube-vip:v1.0.3", "ghcr.io/kube-vip/kube-vip-iptables:v1.0.3"} <= set(images)
    assert "quay.io/coreos/etcd:v3.6.8" in images  # etcd_deployment_type variant
    assert everything.problems == ()


def test_user_variables_override_defaults_but_not_role_vars() -> None:
    plan = make_plan(
        spec(
            kubespray_vars={
                "helm_enabled": True,
                "kube_image_repo": "mirror.example:5000/k8s",
                "kube_major_version": "9",
            }
        ),
        TREE,
    )
    assert any(f.name == "helm" for f in plan.files)
    images = images_by(plan)
    assert "mirror.example:5000/k8s/kube-apiserver:v1.35.2" in images
    assert images["mirror.example:5000/k8s/pause:3.10.1"].bundle_repository == "library/mirror.example:5000/k8s/pause"
    # kube_major_version is a role var: the inventory cannot replace it, so 1.35 still drives pause/etcd.
    assert plan.problems == ()


def test_a_template_that_cannot_render_is_reported_and_the_rest_renders() -> None:
    plan = make_plan(spec(kubespray_vars={"cni_version": "{{ cni_release_typo }}"}), TREE)
    problems = [p for p in plan.problems if p.entry == "cni"]
    assert problems, plan.problems
    assert problems[0].variable == "cni_download_url"
    assert "cni_release_typo" in problems[0].message
    assert not any(f.name == "cni" for f in plan.files)
    assert any(f.name == "kubeadm" for f in plan.files) and plan.images


def test_filter_error_in_one_entry_is_reported_with_its_variable() -> None:
    plan = make_plan(spec(kubespray_vars={"calico_node_image_tag": "{{ 1 | no_such_filter }}"}), TREE)
    assert [(p.entry, p.variable) for p in plan.problems] == [("calico_node", "calico_node_image_tag")]
    assert "no_such_filter" in plan.problems[0].message


def test_kube_version_outside_the_checksum_tables_lists_supported_ones() -> None:
    with pytest.raises(CatalogError) as info:
        make_plan(spec(kube_version="1.99.0"), TREE)
    assert info.value.exit_code == 2
    assert "kube_version 1.99.0 is not in kubespray v2.31.0-example's checksum tables" in str(info.value)
    assert "supported: 1.35.2, 1.35.1, 1.34.4" in str(info.value)


def test_unknown_network_plugin_and_container_manager_list_valid_ones() -> None:
    with pytest.raises(
        CatalogError, match=r"kube_network_plugin: unknown value 'weave'; .* calico, flannel, cilium, none"
    ):
        make_plan(spec(kube_network_plugin=["calico", "weave"]), TREE)
    with pytest.raises(CatalogError, match=r"container_manager: unknown value 'docker'; .* crio, containerd"):
        make_plan(spec(container_manager="docker"), TREE)
    with pytest.raises(CatalogError, match=r"etcd_deployment_type: unknown value 'docker'"):
        make_plan(spec(kubespray_vars={"etcd_deployment_type": "docker"}), TREE)


def test_unknown_arch_lists_supported_ones() -> None:
    with pytest.raises(CatalogError, match=r"unknown arch 's390x'; supported: amd64, arm64"):
        make_plan(spec(), TREE, arches=["s390x"])


def test_settings_with_their_own_field_are_refused_in_kubespray_vars() -> None:
    with pytest.raises(ConfigError, match=r"kubespray_vars.kube_network_plugin: set `kube_network_plugin` at the top"):
        make_plan(spec(kubespray_vars={"kube_network_plugin": "cilium"}), TREE)


def test_old_layout_gives_the_same_plan(tmp_path: Path) -> None:
    root = tmp_path / "kubespray-2.27.0"
    shutil.copytree(TREE.root, root)
    old = root / "roles" / "kubespray-defaults"
    (root / "roles" / "kubespray_defaults").rename(old)
    (old / "vars/main/checksums.yml").rename(old / "defaults/main/checksums.yml")
    (old / "vars/main/main.yml").rename(old / "vars/main.yml")
    old_tree = load_tree(root)
    assert old_tree.layout == "kubespray-defaults"
    assert make_plan(spec(arches=["amd64", "arm64"]), old_tree) == make_plan(spec(arches=["amd64", "arm64"]), TREE)


def test_plan_round_trips_through_json() -> None:
    plan = make_plan(spec(arches=["amd64", "arm64"]), TREE, all_entries=True)
    assert Plan.model_validate_json(plan.model_dump_json()) == plan


def add_role(root: Path, role: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / "roles" / role / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_images_of_enabled_roles_outside_downloads_are_planned(tmp_path: Path) -> None:
    """A role that puts an image straight into a manifest (not in downloads:) gets it bundled when it runs."""
    root = tmp_path / "kubespray-2.31.0"
    shutil.copytree(TREE.root, root)
    add_role(root, "apps", {"meta/main.yml": (
        "dependencies:\n"
        "  - role: apps/helper\n    when: helper_enabled\n"
        "  - role: apps/cloud\n    when:\n      - cloud == 'x'\n"
        "      - inventory_hostname == groups['kube_control_plane'][0]\n"
    )})  # fmt: skip
    add_role(root, "apps/helper", {
        "defaults/main.yml": "helper_enabled: false\nhelper_image_repo: busybox\nhelper_image_tag: '1.36'\n",
        "templates/cm.yml.j2": "image: {{ helper_image_repo }}:{{ helper_image_tag }}\n",
    })  # fmt: skip
    add_role(root, "apps/cloud", {
        "defaults/main.yml": "cloud: ''\ncloud_ccm_image_repo: ghcr.io/x\ncloud_ccm_image_tag: v1\n",
        "templates/ccm.yml.j2": "image: {{ cloud_ccm_image_repo }}/ccm:{{ cloud_ccm_image_tag }}\n",
    })  # fmt: skip
    tree = load_tree(root)
    default = make_plan(spec(), tree)
    assert default.problems == ()
    assert {i.upstream for i in default.images} == {i.upstream for i in make_plan(spec(), TREE).images}
    assert "helper_image_repo" not in default.offline_vars

    helper = make_plan(spec(kubespray_vars={"helper_enabled": True}), tree)
    assert images_by(helper)["busybox:1.36"].bundle_repository == "library/docker.io/library/busybox"
    assert "ghcr.io/x/ccm:v1" not in images_by(helper)
    # kubespray must look for it in the bundle registry too, where the bundle stores it.
    assert helper.offline_vars["helper_image_repo"] == "{{ registry_host }}/library/docker.io/library/busybox"

    # A condition about the host (the first control plane node) holds for some host: it counts as true.
    cloud = make_plan(spec(kubespray_vars={"cloud": "x"}), tree)
    assert "ghcr.io/x/ccm:v1" in images_by(cloud)
    assert "busybox:1.36" not in images_by(cloud)
