"""`kubeplay upgrade` as a user meets it: every path kubespray and kubeadm cannot take is refused with exit 2
before any host is touched, naming the served versions that would work; the phases of the real v2.31.0
upgrade-cluster.yml; the unattended upgrade variables; the served version deploy picks."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from tests.conftest import run_kubeplay
from tests.upgrade_fixture import add_version, config_file, real_release, trace_tree, write_record

from kubeplay.console import Output
from kubeplay.deploy.phases import read_cluster_plays, upgrade_phases, write_phase_playbook
from kubeplay.deploy.record import read_record
from kubeplay.deploy.upgrade import prepare_upgrade, upgrade_runner, upgrade_vars
from kubeplay.deploy.versions import ServedPaths, choose_bundle
from kubeplay.errors import BadInput

SPRAY_30, SPRAY_31 = "v2.30.0", "v2.31.0"


@pytest.fixture
def node(tmp_path: Path) -> dict[str, Path]:
    """A deploy node: a served set (empty), a CA, one cluster's config.yaml and state dir."""
    ca = tmp_path / "rootCA.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    return {
        "served": tmp_path / "served",
        "ca": ca,
        "config": config_file(tmp_path / "a" / "config.yaml", ["node1"]),
        "state": tmp_path / "a" / "state",
        "trees": tmp_path / "trees",
    }


def serve(node: dict[str, Path], kube: str, spray: str, day: int = 1, **kw: dict[str, str]) -> str:
    tree = node["trees"] / f"kubespray-{spray}-{kube}"
    if not tree.exists():
        trace_tree(node["trees"], f"{spray}-{kube}")
    return add_version(node["served"], kube, spray, tree, installed_at=f"2026-12-0{day}T00:00:00Z", **kw)


def upgrade_cli(node: dict[str, Path], *args: str) -> tuple[int, str]:
    proc = run_kubeplay(
        "upgrade", "-c", str(node["config"]), "--state-dir", str(node["state"]), "--served", str(node["served"]),
        "--ca", str(node["ca"]), *args, env={"COLUMNS": "400"},
    )  # fmt: skip
    return proc.returncode, " ".join(proc.stderr.split())


def nothing_touched(node: dict[str, Path]) -> bool:
    state = node["state"]
    return not (state / "logs").exists() and not (state / "inventory").exists()


def test_a_version_that_is_not_served_is_refused_naming_what_would_work(node: dict[str, Path]) -> None:
    old = serve(node, "1.34.3", SPRAY_30)
    new = serve(node, "1.35.4", SPRAY_31, day=2)
    write_record(node["state"], "1.34.3", SPRAY_30, old)
    rc, err = upgrade_cli(node, "--to", "1.35.9")
    assert rc == 2, err
    assert (
        "Kubernetes 1.35.9 is not served by this deploy node; it serves "
        f"Kubernetes 1.34.3 (kubespray v2.30.0, {old[:12]}), Kubernetes 1.35.4 (kubespray v2.31.0, {new[:12]})"
    ) in err
    assert (
        "install its bundle (or delta) first: ./install.sh in its directory; served versions that work from "
        f"1.34.3: Kubernetes 1.35.4 (kubespray v2.31.0, {new[:12]})"
    ) in err
    assert "Traceback" not in err
    assert nothing_touched(node)


def test_skipping_a_minor_is_refused_naming_the_minor_to_go_through(node: dict[str, Path]) -> None:
    old = serve(node, "1.34.3", SPRAY_30)
    step = serve(node, "1.35.4", SPRAY_31, day=2)
    serve(node, "1.36.1", "v2.32.0", day=3)
    write_record(node["state"], "1.34.3", SPRAY_30, old)
    rc, err = upgrade_cli(node, "--to", "1.36.1")
    assert rc == 2, err
    assert (
        f"Kubernetes 1.36.1 skips a minor version: the cluster runs 1.34.3 (the deploy record in {node['state']}); "
        "upgrade to 1.35.x first (kubeadm upgrades one minor at a time)"
    ) in err
    assert f"served versions that work: Kubernetes 1.35.4 (kubespray v2.31.0, {step[:12]})" in err
    assert nothing_touched(node)


def test_an_older_version_is_refused(node: dict[str, Path]) -> None:
    serve(node, "1.35.3", SPRAY_31)
    current = serve(node, "1.35.4", SPRAY_31, day=2)
    write_record(node["state"], "1.35.4", SPRAY_31, current)
    rc, err = upgrade_cli(node, "--to", "v1.35.3")
    assert rc == 2, err
    assert (
        f"Kubernetes 1.35.3 is older than the cluster's 1.35.4 (the deploy record in {node['state']}): "
        "kubespray and kubeadm do not downgrade"
    ) in err
    assert "served versions that work: none" in err
    assert nothing_touched(node)


def test_a_kubespray_that_skips_a_release_is_refused(node: dict[str, Path]) -> None:
    serve(node, "1.35.4", SPRAY_31)
    write_record(node["state"], "1.34.3", "v2.29.1")
    rc, err = upgrade_cli(node, "--to", "1.35.4")
    assert rc == 2, err
    assert (
        "Kubernetes 1.35.4 is served with kubespray v2.31.0, but the cluster was deployed with kubespray v2.29.1: "
        "kubespray upgrades only from its previous release; upgrade with a kubespray v2.30.x bundle first"
    ) in err
    assert nothing_touched(node)


def test_the_version_the_cluster_runs_is_nothing_to_do(node: dict[str, Path]) -> None:
    current = serve(node, "1.35.4", SPRAY_31)
    write_record(node["state"], "1.35.4", SPRAY_31, current)
    rc, err = upgrade_cli(node, "--to", "1.35.4")
    assert rc == 2, err
    assert f"the cluster already runs Kubernetes 1.35.4 (the deploy record in {node['state']}): nothing to do" in err
    assert "to re-run steps of that upgrade anyway, add --from STEP or --only STEP" in err
    assert nothing_touched(node)


def test_a_cluster_without_a_record_is_refused(node: dict[str, Path]) -> None:
    serve(node, "1.35.4", SPRAY_31)
    rc, err = upgrade_cli(node, "--to", "1.35.4")
    assert rc == 2, err
    assert f"{node['state']}/cluster.json: no deploy recorded, so the cluster's version is unknown" in err


def test_an_unknown_step_names_the_until_option(node: dict[str, Path]) -> None:
    old = serve(node, "1.35.3", SPRAY_31)
    serve(node, "1.35.4", SPRAY_31, day=2)
    write_record(node["state"], "1.35.3", SPRAY_31, old)
    rc, err = upgrade_cli(node, "--to", "1.35.4", "--until", "kubeadm", "--skip-preflight")
    assert rc == 2, err
    assert "--until kubeadm: no such upgrade step" in err
    assert "upgrade steps: node-prep, prepare, control-plane, workers" in err


def test_list_steps_of_a_patch_upgrade_with_the_real_release(node: dict[str, Path]) -> None:
    tree = real_release(node["trees"], "2.31.0")
    old = add_version(node["served"], "1.35.3", SPRAY_31, tree)
    add_version(node["served"], "1.35.4", SPRAY_31, tree, installed_at="2026-12-02T00:00:00Z")
    write_record(node["state"], "1.35.3", SPRAY_31, old)
    rc, err = upgrade_cli(node, "--to", "1.35.4", "--list-steps")
    assert rc == 0, err
    for step in ("preflight", "node-prep", "prepare", "container-engine", "etcd", "control-plane", "network"):
        assert f" {step} " in f" {err} "
    assert "workers - kubespray worker nodes, `serial` at a time" in err
    record = read_record(node["state"])
    assert record is not None and record.kube_version == "1.35.3", "listing the steps changes nothing"


# --- the real kubespray v2.31.0 upgrade playbook ---------------------------------------------------------


def test_real_upgrade_cluster_yml_phases_cover_every_play_once_in_order(tmp_path: Path) -> None:
    ks = real_release(tmp_path, "2.31.0")
    phases = upgrade_phases(ks)
    assert [p.name for p in phases] == [
        "prepare", "container-engine", "etcd", "control-plane", "network", "workers", "apps",
    ]  # fmt: skip
    plays = [
        p
        for p in read_cluster_plays(ks, "upgrade_cluster.yml")
        if "import_playbook" not in p or p["name"] == "Install etcd"
    ]
    covered = [pl for ph in phases for pl in ph.plays]
    assert [c["name"] for c in covered] == [p["name"] for p in plays]
    assert [p.after_preinstall for p in phases] == [False] + [True] * 6
    # The top-level upgrade-cluster.yml only imports playbooks/upgrade_cluster.yml: its plays are those.
    top = yaml.safe_load((ks / "upgrade-cluster.yml").read_text())
    assert top[0]["ansible.builtin.import_playbook"] == "playbooks/upgrade_cluster.yml"
    written = yaml.safe_load(write_phase_playbook(ks, phases[2], tmp_path / "pb").read_text())
    assert written[0]["import_playbook"] == str(ks / "playbooks" / "boilerplate.yml")
    assert written[-1]["import_playbook"] == str(ks / "playbooks" / "install_etcd.yml")
    assert written[-1]["vars"]["etcd_cluster_setup"] is True
    assert any("tasks_from" in str(p) for p in written)  # kubernetes/preinstall's facts, set in `prepare`
    assert (tmp_path / "pb" / "kubespray-upgrade-cluster-etcd.yml").is_file()


def test_v2_30_upgrade_playbook_has_the_same_phases(tmp_path: Path) -> None:
    assert [p.name for p in upgrade_phases(real_release(tmp_path, "2.30.0"))] == [
        "prepare", "container-engine", "etcd", "control-plane", "network", "workers", "apps",
    ]  # fmt: skip


# --- the variables the upgrade runs with -----------------------------------------------------------------


def test_upgrade_vars_pass_kubesprays_knobs_and_never_wait_for_a_person() -> None:
    knobs = {"serial": 1, "drain_nodes": False, "drain_timeout": "600s", "upgrade_node_confirm": True}
    assert upgrade_vars(knobs | {"kube_network_plugin": "calico"}) == {
        "serial": 1,
        "drain_nodes": False,
        "drain_timeout": "600s",
        "upgrade_node_confirm": False,
        "upgrade_node_pause_seconds": 0,
    }


def _out() -> Output:
    return Output(console=Console(file=io.StringIO(), width=200))


def test_prepare_upgrade_uses_the_new_release_and_config_knobs(node: dict[str, Path]) -> None:
    node["config"] = config_file(node["config"], ["node1"], serial=1, upgrade_node_pause_seconds=60)
    old = serve(node, "1.34.3", SPRAY_30, repo_files={"repos/apt/debian/bookworm/pool/main/c/chrony.deb": "a" * 64})
    serve(node, "1.35.4", SPRAY_31, day=2, repo_files={"repos/apt/debian/bookworm/pool/main/c/chrony.deb": "b" * 64})
    write_record(node["state"], "1.34.3", SPRAY_30, old)
    u = prepare_upgrade(
        node["config"], "1.35.4", state_dir=node["state"], served=ServedPaths(served_dir=node["served"]),
        out=_out(), ca_path=node["ca"], probe=False,
    )  # fmt: skip
    assert u.deploy.kubespray_dir == (node["trees"] / f"kubespray-{SPRAY_31}-1.35.4").resolve()
    assert u.deploy.group_vars["kube_version"] == "1.35.4"
    assert u.extravars == {"serial": 1, "upgrade_node_confirm": False, "upgrade_node_pause_seconds": 0}
    assert u.prep_needed, "the OS repo's packages changed: node prep runs again"
    assert u.ledger == node["state"] / "ledger-upgrade-1.35.4.json"
    assert upgrade_runner(u).names == ["preflight", "node-prep", "prepare", "control-plane", "workers"]


def test_node_prep_is_not_needed_when_the_os_repos_did_not_change(node: dict[str, Path]) -> None:
    same = {"repos/apt/debian/bookworm/pool/main/c/chrony.deb": "a" * 64}
    old = serve(node, "1.35.3", SPRAY_31, repo_files=same)
    serve(node, "1.35.4", SPRAY_31, day=2, repo_files=same | {"repos/apt/debian/bookworm/dists/x/Release": "c" * 64})
    write_record(node["state"], "1.35.3", SPRAY_31, old)
    u = prepare_upgrade(
        node["config"], "1.35.4", state_dir=node["state"], served=ServedPaths(served_dir=node["served"]),
        out=_out(), ca_path=node["ca"], probe=False,
    )  # fmt: skip
    assert not u.prep_needed


# --- which served version deploy and the day-2 commands use ----------------------------------------------


def test_deploy_takes_the_clusters_own_version_else_version_else_the_only_one(node: dict[str, Path]) -> None:
    paths = ServedPaths(served_dir=node["served"])
    cfg, state = node["config"], node["state"]
    only = serve(node, "1.34.3", SPRAY_30)
    facts = choose_bundle(cfg, state, paths)
    assert (facts.kube_version, facts.kubespray_dir.name) == ("1.34.3", "kubespray")
    assert facts.kubespray_dir.resolve() == (node["trees"] / f"kubespray-{SPRAY_30}-1.34.3").resolve()

    serve(node, "1.35.4", SPRAY_31, day=2)
    with pytest.raises(BadInput) as info:
        choose_bundle(cfg, state, paths)
    assert info.value.message.startswith(
        f"this deploy node serves several versions and {state} records no cluster: Kubernetes 1.34.3 (kubespray v2.30.0"
    )
    assert info.value.hint == f"say which with --version, e.g. kubeplay deploy -c {cfg} --version 1.35.4"
    assert choose_bundle(cfg, state, paths, version="1.35.4").kube_version == "1.35.4"

    write_record(state, "1.34.3", SPRAY_30, only)
    assert choose_bundle(cfg, state, paths).kube_version == "1.34.3"
    with pytest.raises(BadInput) as info:
        choose_bundle(cfg, state, paths, version="1.35.4", command="add-node")
    assert info.value.message == f"--version 1.35.4: the cluster of {state} runs Kubernetes 1.34.3"
    assert info.value.hint == f"to move it to 1.35.4: kubeplay upgrade -c {cfg} --state-dir {state} --to 1.35.4"

    write_record(state, "1.34.3", SPRAY_30, only, upgrading_to="1.35.4")
    with pytest.raises(BadInput) as info:
        choose_bundle(cfg, state, paths, command="add-node")
    assert info.value.hint == f"finish it first: kubeplay upgrade -c {cfg} --state-dir {state} --to 1.35.4"
    assert choose_bundle(cfg, state, paths, command="reset").kube_version == "1.34.3"


def test_deploy_refuses_to_guess_between_served_versions(node: dict[str, Path]) -> None:
    serve(node, "1.34.3", SPRAY_30)
    serve(node, "1.35.4", SPRAY_31, day=2)
    proc = run_kubeplay(
        "deploy", "-c", str(node["config"]), "--state-dir", str(node["state"]), "--ca", str(node["ca"]),
        env={"KUBEPLAY_SERVED": str(node["served"]), "COLUMNS": "400"},
    )  # fmt: skip
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 2, err
    assert "this deploy node serves several versions" in err
    assert "say which with --version" in err
    assert nothing_touched(node)


def test_served_set_default_follows_the_install_state_dir(tmp_path: Path) -> None:
    from kubeplay.settings import from_environ

    assert from_environ({}).served == Path("/var/lib/kubeplay/served")
    assert from_environ({"KUBEPLAY_STATE_DIR": str(tmp_path)}).served == tmp_path / "served"
    assert from_environ({"KUBEPLAY_SERVED": "/x", "KUBEPLAY_STATE_DIR": str(tmp_path)}).served == Path("/x")


# --- one venv, one kubespray Ansible ---------------------------------------------------------------------


def test_a_kubespray_whose_ansible_this_venv_lacks_is_refused_before_any_host(tmp_path: Path) -> None:
    from kubeplay.bootstrap.bundleinfo import BundleFacts
    from kubeplay.deploy.versions import check_ansible

    tree = real_release(tmp_path, "2.30.0")
    (tmp_path / "b" / "kubespray").parent.mkdir()
    (tmp_path / "b" / "kubespray").symlink_to(tree)
    manifest = {"kubespray": {"version": "v2.30.0", "path": "kubespray"}}
    facts = BundleFacts(root=tmp_path / "b", kube_version="1.34.3", arches=("amd64",), repos=(), manifest=manifest)
    check_ansible(facts, "2.17.14")
    check_ansible(facts, None)  # no ansible-core in this environment: ansible-playbook from PATH, not checked
    with pytest.raises(BadInput) as info:
        check_ansible(facts, "2.18.19")
    assert info.value.message.startswith(
        "kubespray v2.30.0 (Kubernetes 1.34.3) runs with ansible-core >=2.17.3,<2.18.0; this kubeplay's environment ("
    )
    assert info.value.message.endswith("has ansible-core 2.18.19; nothing was changed on any host")
    assert "one venv holds one kubespray's Ansible" in (info.value.hint or "")


def test_the_readmes_upgrade_commands_name_real_options_and_steps(tmp_path: Path) -> None:
    import typer

    from kubeplay.cli.app import app

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    commands = [line.split() for line in readme.splitlines() if line.startswith("    kubeplay ")]
    steps = {"preflight", "node-prep", *(p.name for p in upgrade_phases(real_release(tmp_path, "2.31.0")))}
    root = typer.main.get_command(app)
    checked = 0
    for words in commands:
        if words[1] not in ("upgrade", "deploy", "reset") or "[" in " ".join(words):
            continue
        options = {o for p in root.commands[words[1]].params for o in p.opts}  # type: ignore[attr-defined]
        given = [w for w in words[2:] if w.startswith("-")]
        assert set(given) <= options, words
        if words[1] == "upgrade" and "--from" in words:
            assert words[words.index("--from") + 1] in steps
        checked += 1
    assert checked >= 6
