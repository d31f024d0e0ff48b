"""The plan equals what real Ansible computes from the same kubespray release (no network needed).

Ansible (ansible-playbook from this venv, ansible-core 2.18) loads the same roles as kubespray's
contrib/offline/generate_list.yml (kubespray_defaults and download), with the user's settings as inventory
variables and the arch facts as host variables, and dumps the rendered `downloads` plus the images kubeadm
adds. kubeplay's plan must list exactly the same URLs, checksums and image references.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import require_shared, skip_or_fail

from kubeplay.catalog.examples import example_tree_path
from kubeplay.catalog.model import Plan
from kubeplay.catalog.offline import offline_vars
from kubeplay.catalog.planner import make_plan
from kubeplay.catalog.source import KubesprayTree, load_tree
from kubeplay.config.bundle import BundleSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}

DUMP_PLAYBOOK = """
- name: Dump what kubespray would download, as Ansible renders it
  hosts: all
  gather_facts: false
  roles:
    - role: DEFAULTS_ROLE
      when: false
    - role: download
      when: false
  tasks:
    - name: Write the rendered downloads
      copy:
        dest: "{{ dump_dir }}/{{ inventory_hostname }}.json"
        content: "{{ dump | to_nice_json }}"
        mode: "0644"
      vars:
        # kubeadm_image_repo exists since v2.25; kube_version had a leading "v" before v2.28.
        kubeadm_repo: "{{ kubeadm_image_repo | default(kube_image_repo) }}"
        kubeadm_tag: "v{{ kube_version | regex_replace('^v', '') }}"
        kubeadm_control_plane:
          - "{{ kubeadm_repo }}/kube-apiserver:{{ kubeadm_tag }}"
          - "{{ kubeadm_repo }}/kube-controller-manager:{{ kubeadm_tag }}"
          - "{{ kubeadm_repo }}/kube-scheduler:{{ kubeadm_tag }}"
          - "{{ kubeadm_repo }}/kube-proxy:{{ kubeadm_tag }}"
        # roles/download/templates/kubeadm-images.yaml.j2: kubeadm pulls etcd itself only when it runs etcd.
        kubeadm_etcd: >-
          {{ [(etcd_image_repo | regex_replace('/etcd$', '')) + '/etcd:' + etcd_image_tag]
             if etcd_deployment_type == 'kubeadm' else [] }}
        dump:
          downloads: "{{ downloads }}"
          download_defaults: "{{ download_defaults }}"
          kubeadm_images: "{{ kubeadm_control_plane + kubeadm_etcd }}"
          kube_version: "{{ kube_version }}"
          image_arch: "{{ image_arch }}"
"""


def release(version: str) -> Path:
    archive = require_shared("upstream", "kubespray", f"kubespray-{version}.tar.gz")
    require_ansible_playbook()
    return archive


def require_ansible_playbook() -> None:
    if not ANSIBLE_PLAYBOOK.is_file():
        skip_or_fail(f"{ANSIBLE_PLAYBOOK} absent: ansible-core is not installed in this venv")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kubespray-cache")


def tree_of(version: str, cache_dir: Path) -> KubesprayTree:
    return load_tree(release(version), cache_dir=cache_dir)


def ansible_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
        ANSIBLE_CACHE_PLUGIN="memory",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        PATH=f"{ANSIBLE_PLAYBOOK.parent}:{env.get('PATH', '')}",
    )
    return env


def ansible_downloads(tree: KubesprayTree, arches: list[str], user_vars: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Run ansible-playbook once with one local host per arch; return {arch: dump}."""
    tmp.mkdir(parents=True, exist_ok=True)
    playbook = tmp / "dump.yml"
    playbook.write_text(DUMP_PLAYBOOK.replace("DEFAULTS_ROLE", tree.layout))
    inventory = {
        "all": {
            "hosts": {
                f"node-{arch}": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                    "ansible_architecture": MACHINE[arch],
                    "ansible_system": "Linux",
                    "ansible_os_family": "Debian",
                }
                for arch in arches
            },
            "vars": user_vars,
        }
    }
    (tmp / "inventory.json").write_text(json.dumps(inventory))
    result = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(tmp / "inventory.json"), str(playbook), "-e", f"dump_dir={tmp}"],
        env={**ansible_env(tmp), "ANSIBLE_ROLES_PATH": str(tree.root / "roles")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return {arch: json.loads((tmp / f"node-{arch}.json").read_text()) for arch in arches}


def expected_from_ansible(dump: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
    """Files (url -> checksum) and image references kubespray's download role would fetch."""
    files: dict[str, str] = {}
    images: set[str] = set(dump["kubeadm_images"])
    for name, entry in dump["downloads"].items():
        item = {**dump["download_defaults"], **entry}
        if not (item["enabled"] and entry.get("enabled")):
            continue
        if item["container"]:
            digest = item.get("sha256")
            images.add(f"{item['repo']}@sha256:{digest}" if digest else f"{item['repo']}:{item['tag']}")
        else:
            assert item["url"].startswith("https://"), (name, item["url"])
            files[item["url"]] = str(item.get("checksum") or item.get("sha256"))
    return files, images


def plan_for_arch(plan: Plan, arch: str) -> tuple[dict[str, str], set[str]]:
    files = {f.url: str(f.checksum) for f in plan.files if f.arch in (arch, "noarch")}
    images = {i.upstream for i in plan.images if arch in i.arches}
    return files, images


def spec(version: str, **fields: Any) -> BundleSpec:
    return BundleSpec.model_validate({"kubespray": {"version": version, "source": "unused"}, **fields})


def assert_conforms(plan: Plan, dumps: dict[str, Any]) -> None:
    assert plan.problems == ()
    for arch, dump in dumps.items():
        assert dump["image_arch"] == arch
        assert plan.kube_version == dump["kube_version"]
        want_files, want_images = expected_from_ansible(dump)
        got_files, got_images = plan_for_arch(plan, arch)
        assert got_files == want_files, arch
        assert got_images == want_images, arch
        assert len(want_files) >= 5 and len(want_images) >= 5, "a conformance check on an empty plan proves nothing"


@pytest.mark.parametrize("version", ["v2.31.0", "v2.30.0"])
def test_default_configuration_equals_ansible_on_amd64_and_arm64(version: str, cache_dir: Path, tmp_path: Path) -> None:
    tree = tree_of(version, cache_dir)
    assert tree.version == version
    plan = make_plan(spec(version, arches=["amd64", "arm64"]), tree)
    dumps = ansible_downloads(tree, ["amd64", "arm64"], {}, tmp_path)
    assert_conforms(plan, dumps)
    # The control-plane images come from kubeadm, not from downloads:, and are in the plan.
    upstreams = {i.upstream for i in plan.images}
    assert f"registry.k8s.io/kube-apiserver:v{plan.kube_version}" in upstreams


def test_cilium_crio_kubeadm_etcd_on_arm64_equals_ansible(cache_dir: Path, tmp_path: Path) -> None:
    tree = tree_of("v2.31.0", cache_dir)
    settings = {"kube_network_plugin": "cilium", "container_manager": "crio"}
    user_vars = {**settings, "etcd_deployment_type": "kubeadm"}
    plan = make_plan(
        spec("v2.31.0", arches=["arm64"], kubespray_vars={"etcd_deployment_type": "kubeadm"}, **settings), tree
    )
    dumps = ansible_downloads(tree, ["arm64"], user_vars, tmp_path)
    assert_conforms(plan, dumps)
    names = {i.name for i in plan.images} | {f.name for f in plan.files}
    assert {"cilium", "crio", "skopeo", "etcd"} <= names
    assert any(i.upstream.startswith("quay.io/coreos/etcd:v3.") for i in plan.images)
    assert not any(f.name == "etcd" for f in plan.files), "etcd runs as a kubeadm static pod, not a binary"
    assert not {"calico_node", "containerd", "runc"} & names


def test_images_enabled_roles_use_outside_downloads_are_bundled(cache_dir: Path) -> None:
    """v2.31's local-path-provisioner runs its helper pods from busybox, which downloads: never lists."""
    tree = tree_of("v2.31.0", cache_dir)
    default = {i.name: i for i in make_plan(spec("v2.31.0"), tree).images}
    assert "local_path_provisioner_helper" not in default and "external_oracle_cloud_controller" not in default
    local_path = make_plan(spec("v2.31.0", kubespray_vars={"local_path_provisioner_enabled": True}), tree)
    images = {i.name: i for i in local_path.images}
    assert images["local_path_provisioner"].upstream.startswith("docker.io/rancher/local-path-provisioner:")
    assert images["local_path_provisioner_helper"].upstream == "busybox:latest"
    assert local_path.offline_vars["local_path_provisioner_helper_image_repo"] == (
        "{{ registry_host }}/library/docker.io/library/busybox"
    )
    oci = make_plan(
        spec("v2.31.0", kubespray_vars={"cloud_provider": "external", "external_cloud_provider": "oci"}), tree
    )
    assert {i.name for i in oci.images} - set(default) == {"external_oracle_cloud_controller"}


def test_union_of_configurations_is_each_configuration_deduplicated(cache_dir: Path) -> None:
    tree = tree_of("v2.31.0", cache_dir)
    both = make_plan(spec("v2.31.0", kube_network_plugin=["calico", "cilium"], container_manager=["containerd"]), tree)
    calico = make_plan(spec("v2.31.0", kube_network_plugin="calico"), tree)
    cilium = make_plan(spec("v2.31.0", kube_network_plugin="cilium"), tree)
    assert {f.url for f in both.files} == {f.url for f in calico.files} | {f.url for f in cilium.files}
    assert {i.upstream for i in both.images} == {i.upstream for i in calico.images} | {
        i.upstream for i in cilium.images
    }
    assert len({i.upstream for i in both.images}) == len(both.images)


def generate_list(tree: KubesprayTree, tmp: Path) -> tuple[list[str], list[str]]:
    """Run the release's own contrib/offline/generate_list.sh on a copy of the tree; return its two lists."""
    copy = tmp / "kubespray"
    shutil.copytree(tree.root, copy, symlinks=True)
    result = subprocess.run(
        ["bash", "contrib/offline/generate_list.sh", "-e", f"ansible_python_interpreter={sys.executable}"],
        cwd=copy,
        env=ansible_env(tmp),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    temp = copy / "contrib" / "offline" / "temp"
    files = [line.strip() for line in (temp / "files.list").read_text().splitlines() if line.strip()]
    images = [line.strip() for line in (temp / "images.list").read_text().splitlines() if line.strip()]
    return files, images


def test_all_is_a_superset_of_generate_list(cache_dir: Path, tmp_path: Path) -> None:
    tree = tree_of("v2.31.0", cache_dir)
    host_arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine())
    if host_arch is None:
        pytest.skip(f"generate_list.sh renders for the host's arch; {platform.machine()} is not amd64/arm64")
    files, images = generate_list(tree, tmp_path)
    assert len(files) > 20 and len(images) > 40
    plan = make_plan(spec("v2.31.0", arches=[host_arch]), tree, all_entries=True)
    plan_files = {f.url for f in plan.files}
    plan_images = {i.upstream for i in plan.images}
    assert set(files) - plan_files == set()
    assert set(images) - plan_images == set()
    # What generate_list.sh misses: argocd's install.yaml (its variable is not a *download_url) and the
    # variants of entries (static containerd, kube-vip with masquerade, the experimental gateway API CRDs).
    missed = plan_files - set(files)
    assert any("argo-cd" in url and url.endswith("/install.yaml") for url in missed)
    assert any("containerd-static-" in url for url in missed)
    assert "ghcr.io/kube-vip/kube-vip-iptables:v1.0.3" in plan_images - set(images)
    assert plan.problems == ()


def test_example_tree_equals_ansible_without_shared(tmp_path: Path) -> None:
    """The shipped example tree (the demo's fallback) renders as Ansible renders it; needs no ../shared."""
    require_ansible_playbook()
    tree = load_tree(example_tree_path())
    settings = {"kube_network_plugin": "cilium", "container_manager": "crio"}
    for index, (fields, user_vars) in enumerate(
        [
            ({}, {}),
            (
                {**settings, "kubespray_vars": {"etcd_deployment_type": "kubeadm"}},
                {**settings, "etcd_deployment_type": "kubeadm"},
            ),
        ]
    ):
        plan = make_plan(spec(tree.version or "", arches=["amd64", "arm64"], **fields), tree)
        assert_conforms(plan, ansible_downloads(tree, ["amd64", "arm64"], user_vars, tmp_path / str(index)))


def test_offline_vars_send_every_download_of_all_to_its_bundle_location(cache_dir: Path) -> None:
    tree = tree_of("v2.31.0", cache_dir)
    base = spec("v2.31.0", arches=["amd64", "arm64"])
    plan = make_plan(base, tree, all_entries=True)
    files_repo, registry = "http://10.0.0.2:8080/files", "10.0.0.2:5443"
    redirected = make_plan(
        base, tree, all_entries=True, extra_vars=offline_vars(plan, files_repo=files_repo, registry_host=registry)
    )
    assert redirected.problems == ()
    assert sorted(files_repo + "/" + f.path.removeprefix("files/") for f in plan.files) == sorted(
        f.url for f in redirected.files
    )
    assert {f"{registry}/{i.bundle_repository}:{i.tag}" for i in plan.images} == {i.upstream for i in redirected.images}
