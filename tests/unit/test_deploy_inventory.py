"""config.yaml's inventory: what is refused before any host is touched, and the message the user sees."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import skip_or_fail

from kubeplay.deploy.context import effective_config, load_config
from kubeplay.deploy.inventory import load_inventory, parse_inventory
from kubeplay.errors import ConfigError

GOOD: dict[str, Any] = {
    "all": {
        "vars": {"ansible_user": "root", "ansible_ssh_pass": "hunter2"},
        "hosts": {
            "node1": {"ansible_host": "10.1.0.11"},
            "node2": {"ansible_host": "10.1.0.12"},
            "node3": {"ansible_host": "10.1.0.13"},
        },
        "children": {
            "kube_control_plane": {"hosts": {"node1": None}},
            "kube_node": {"hosts": {"node2": None, "node3": None}},
            "etcd": {"hosts": {"node1": None}},
            "k8s_cluster": {"children": {"kube_control_plane": None, "kube_node": None}},
        },
    }
}


def mutate(path: str, value: Any) -> dict[str, Any]:
    """GOOD with the dotted `path` set to `value` (None deletes)."""
    inv = copy.deepcopy(GOOD)
    node: Any = inv
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return inv


CASES = [
    ("missing ansible_host", mutate("all.hosts.node2", {}), "inventory.all.hosts.node2.ansible_host: missing"),
    ("no etcd group", mutate("all.children.etcd", None), "inventory.all.children.etcd: missing"),
    (
        "empty kube_node",
        mutate("all.children.kube_node", {"hosts": {}}),
        "inventory.all.children.kube_node: has no hosts",
    ),
    (
        "even etcd count",
        mutate("all.children.etcd", {"hosts": {"node1": None, "node2": None}}),
        "2 hosts (node1, node2); etcd needs an odd number",
    ),
    (
        "duplicate address",
        mutate("all.hosts.node3", {"ansible_host": "10.1.0.12"}),
        "inventory.all.hosts.node3.ansible_host: 10.1.0.12 is also the address of node2",
    ),
    (
        "upper-case name",
        mutate("all.hosts.Node4", {"ansible_host": "10.1.0.14"}),
        "inventory.all.hosts.Node4: host name 'Node4' has upper-case letters",
    ),
    (
        "underscore name",
        mutate("all.hosts.node_4", {"ansible_host": "10.1.0.14"}),
        "host name 'node_4' is not an RFC 1123 name",
    ),
    (
        "legacy group name",
        mutate("all.children.kube-master", {"hosts": {"node1": None}}),
        "group 'kube-master' is now 'kube_control_plane' in kubespray; rename it",
    ),
    (
        "missing key file",
        mutate("all.vars.ansible_ssh_private_key_file", "/nonexistent/id_ed25519"),
        "inventory.all.hosts.node1.ansible_ssh_private_key_file: /nonexistent/id_ed25519 does not exist",
    ),
    (
        "group entry of wrong type",
        mutate("all.children.kube_node", ["node2"]),
        "inventory.all.children.kube_node: expected a mapping with hosts, children or vars, found list",
    ),
    (
        "unknown key in a group",
        mutate("all.children.kube_node.host", {"node2": None}),
        "inventory.all.children.kube_node.host: unknown key",
    ),
]


@pytest.mark.parametrize(("name", "raw", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_inventory_is_refused_with_the_field_path(tmp_path: Path, name: str, raw: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_inventory(raw, tmp_path)
    assert expected in info.value.message
    assert "nothing has been changed on any host" in (info.value.hint or "")
    assert info.value.exit_code == 2


def test_good_inventory_passes_and_keeps_kubespray_group_names(tmp_path: Path) -> None:
    inv = load_inventory(GOOD, tmp_path)
    assert inv.members("kube_node") == ["node2", "node3"]
    assert inv.members("k8s_cluster") == ["node1", "node2", "node3"]
    rendered = inv.to_ansible(exclude_vars=frozenset({"ansible_ssh_pass"}))
    assert set(rendered["all"]["children"]) == {"kube_control_plane", "kube_node", "etcd", "k8s_cluster"}
    assert "hunter2" not in json.dumps(rendered)
    assert inv.secret_values() == ["hunter2"]


def test_world_readable_key_is_refused_and_a_private_one_is_made_absolute(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("not really a key\n")
    key.chmod(0o644)
    raw = mutate("all.vars.ansible_ssh_private_key_file", "id_ed25519")
    with pytest.raises(ConfigError) as info:
        load_inventory(raw, tmp_path)
    assert "readable by other users (mode 0644)" in info.value.message
    assert f"chmod 600 {key}" in info.value.message
    key.chmod(0o600)
    inv = load_inventory(raw, tmp_path)
    assert inv.host_vars("node1")["ansible_ssh_private_key_file"] == str(key)


def test_all_problems_are_listed_at_once(tmp_path: Path) -> None:
    raw = mutate("all.hosts.node2", {})
    raw["all"]["children"].pop("etcd")
    with pytest.raises(ConfigError) as info:
        load_inventory(raw, tmp_path)
    assert "node2.ansible_host: missing" in info.value.message
    assert "children.etcd: missing" in info.value.message


INI = """
# the original kubeplay also accepted an INI inventory
[all]
node[1:3] ansible_user=root
node1 ansible_host=10.1.0.11
node2 ansible_host=10.1.0.12
node3 ansible_host=10.1.0.13 ansible_port=2222

[all:vars]
ansible_become_pass=s3cret value

[kube_control_plane]
node1

[etcd]
node1

[kube_node]
node2
node3

[k8s_cluster:children]
kube_control_plane
kube_node
"""


def test_ini_inventory_is_read_like_ansible_reads_it(tmp_path: Path) -> None:
    inv = load_inventory(INI, tmp_path)
    assert list(inv.hosts) == ["node1", "node2", "node3"]
    assert inv.host_vars("node3")["ansible_port"] == 2222
    assert inv.host_vars("node2")["ansible_become_pass"] == "s3cret value"
    assert inv.members("k8s_cluster") == ["node1", "node2", "node3"]

    ansible_inventory = shutil.which("ansible-inventory") or str(Path(os.sys.executable).parent / "ansible-inventory")
    if not Path(ansible_inventory).exists():
        skip_or_fail("ansible-inventory not installed")
    ini = tmp_path / "hosts.ini"
    ini.write_text(INI)
    ours = tmp_path / "hosts.yaml"
    ours.write_text(yaml.safe_dump(inv.to_ansible()))

    def graph(path: Path) -> dict[str, Any]:
        proc = subprocess.run(
            [ansible_inventory, "-i", str(path), "--list"], capture_output=True, text=True, timeout=60, check=True
        )
        data = json.loads(proc.stdout)
        hostvars = data["_meta"]["hostvars"]
        groups = {g: sorted(v.get("hosts", [])) for g, v in data.items() if g != "_meta"}
        return {"hostvars": hostvars, "groups": groups}

    theirs, mine = graph(ini), graph(ours)
    assert mine["hostvars"] == theirs["hostvars"]
    for group in ("kube_control_plane", "kube_node", "etcd"):
        assert mine["groups"][group] == theirs["groups"][group]


def test_ini_errors_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_inventory(INI.replace("node2 ansible_host=10.1.0.12", "node2 ansible_host=10.1.0.11"), tmp_path)
    assert (
        "inventory (INI line 6) host node2.ansible_host: 10.1.0.11 is also the address of node1" in info.value.message
    )


def test_missing_inventory_says_what_to_add() -> None:
    with pytest.raises(ConfigError) as info:
        parse_inventory(None)
    assert "add an `inventory:` section" in (info.value.hint or "")


def test_unknown_node_name_for_day2_lists_known_hosts(tmp_path: Path) -> None:
    inv = load_inventory(GOOD, tmp_path)
    with pytest.raises(ConfigError) as info:
        inv.subset(["node9"])
    assert "no host named node9" in info.value.message
    assert "node1, node2, node3" in (info.value.hint or "")


# config.yaml as `kubeplay deploy` reads it: one parse into the install model, the inventory taken from it.


def write_config(tmp_path: Path, inventory: Any, **sections: Any) -> Path:
    path = tmp_path / "config.yaml"
    body = {"compose": {"internal_ip": "10.1.0.1"}, **sections}
    if inventory is not ...:
        body["inventory"] = inventory
    path.write_text(yaml.safe_dump(body))
    return path


def test_deploy_inventory_is_the_install_models_inventory(tmp_path: Path) -> None:
    raw = mutate("all.hosts.node1", {"ansible_host": "fd00:0:0:0::11", "ansible_port": 2222})
    cfg, inv = load_config(write_config(tmp_path, raw))
    # the address deploy connects to is the one the install model normalised (and chrony allows)
    assert inv.address("node1") == "fd00::11"
    assert "fd00::11/128" in effective_config(cfg, tmp_path / "config.yaml").ntp_allow
    assert inv.host_vars("node1")["ansible_port"] == 2222
    assert inv.members("k8s_cluster") == ["node1", "node2", "node3"]
    as_written = mutate("all.hosts.node1", {"ansible_host": "fd00::11", "ansible_port": 2222})
    assert inv.to_ansible() == load_inventory(as_written, tmp_path).to_ansible()


def test_deploy_lists_every_inventory_problem_with_the_file_and_field_path(tmp_path: Path) -> None:
    # a group naming a host all.hosts lacks (the install model alone would stop at that) and an even etcd
    raw = mutate("all.children.etcd.hosts", {"node1": None, "node9": None})
    path = write_config(tmp_path, raw)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.message.startswith(f"{path}: inventory is not ready for kubespray")
    assert "inventory.all.children.etcd.hosts.node9.ansible_host: missing" in info.value.message
    assert "2 hosts (node1, node9); etcd needs an odd number" in info.value.message


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"compose": {"internal_ip": "10.1.0.1", "nginx_http_port": 0}}, "compose.nginx_http_port: expected a TCP"),
        (
            {"inventory": mutate("all.hosts.node2", {"ansible_host": "bad host!"})},
            "inventory.all.hosts.node2.ansible_host",
        ),
        (
            {"inventory": mutate("all.children.kube_node.host", {"node2": None})},
            "inventory.all.children.kube_node.host",
        ),
    ],
    ids=["other section", "bad address", "unknown group key"],
)
def test_deploy_model_errors_name_the_file_and_field_path(
    tmp_path: Path, sections: dict[str, Any], expected: str
) -> None:
    path = write_config(tmp_path, GOOD)
    data = yaml.safe_load(path.read_text())
    data.update(sections)
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.message.startswith(f"{path}: ")
    assert expected in info.value.message
    assert info.value.exit_code == 2


@pytest.mark.parametrize("inventory", [..., None, {}], ids=["absent", "null", "empty"])
def test_deploy_without_an_inventory_says_what_to_add(tmp_path: Path, inventory: Any) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, inventory))
    assert "add an `inventory:` section" in (info.value.hint or "")


def test_deploy_reads_an_ini_inventory_from_config_yaml(tmp_path: Path) -> None:
    _, inv = load_config(write_config(tmp_path, INI))
    assert inv.source == "ini"
    assert inv.host_vars("node3")["ansible_port"] == 2222
