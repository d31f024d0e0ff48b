"""The deploy node's Python: per distro release and kubespray release, which CPython the bundle carries wheels
for and which OS packages provide it, and which releases cannot be the deploy node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubeplay.config.bundle import BundleSpec
from kubeplay.errors import BadInput
from kubeplay.osrepo.deploy_python import DISTRO_PYTHONS, deploy_table, pick_python, plan_deploy, python_range
from kubeplay.osrepo.targets import TARGETS, find_target

V2_31 = ">=2.18.0,<2.19.0"  # kubespray v2.31.0: ansible 11.13.0
V2_30 = ">=2.17.3,<2.18.0"  # kubespray v2.30.0: ansible 10.7.0

# (distro, release, kubespray's ansible-core range) -> (Python, OS packages) or None: cannot be the deploy node
CASES: list[tuple[str, str, str, tuple[str, tuple[str, ...]] | None]] = [
    ("debian", "12", V2_31, ("3.11", ("python3", "python3-venv"))),
    ("debian", "13", V2_31, ("3.13", ("python3", "python3-venv"))),
    ("debian", "13", V2_30, None),  # trixie has only 3.13; ansible-core 2.17 stops at 3.12
    ("debian", "11", V2_31, None),
    ("debian", "11", V2_30, None),  # 3.9: below kubeplay's 3.11 too
    ("ubuntu", "24.04", V2_31, ("3.12", ("python3", "python3-venv"))),
    ("ubuntu", "22.04", V2_31, ("3.11", ("python3.11", "python3.11-venv"))),  # universe; the default is 3.10
    ("ubuntu", "22.04", V2_30, ("3.11", ("python3.11", "python3.11-venv"))),  # 3.10 is below kubeplay's floor
    ("rocky", "9", V2_31, ("3.12", ("python3.12",))),  # the newest AppStream Python in range
    ("almalinux", "8", V2_31, ("3.12", ("python3.12",))),
    ("rhel", "8", V2_30, ("3.12", ("python3.12",))),
    ("openeuler", "22.03", V2_31, None),
    ("openeuler", "24.03", V2_31, ("3.11", ("python3",))),
]


@pytest.mark.parametrize(("distro", "release", "core", "expected"), CASES)
def test_python_per_release(distro: str, release: str, core: str, expected: tuple[str, tuple[str, ...]] | None) -> None:
    chosen = pick_python(find_target(distro, release), python_range(core))
    assert (None if chosen is None else (chosen.version, chosen.packages)) == expected


def test_every_supported_target_has_a_python_row() -> None:
    # a target added to TARGETS without a row would silently never be a deploy node
    assert {(t.distro, t.release) for t in TARGETS} == set(DISTRO_PYTHONS)


def test_ansible_core_ranges() -> None:
    assert (python_range(V2_31).low, python_range(V2_31).high) == ("3.11", "3.13")
    assert (python_range(V2_30).low, python_range(V2_30).high) == ("3.11", "3.12")  # 3.10 raised to kubeplay's 3.11
    with pytest.raises(BadInput, match=r"ansible-core 2\.9"):
        python_range(">=2.9.0,<2.10.0")


def _spec(*targets: dict[str, Any], **extra: Any) -> BundleSpec:
    return BundleSpec.model_validate(
        {"kubespray": {"version": "v2.31.0", "source": "/nonexistent"}, "os": list(targets), **extra}
    )


def _kubespray(tmp_path: Path, core_min: str, core_max: str) -> Path:
    (tmp_path / "playbooks").mkdir(parents=True)
    (tmp_path / "playbooks/ansible_version.yml").write_text(
        f"- hosts: all\n  vars:\n    minimal_ansible_version: {core_min}\n    maximal_ansible_version: {core_max}\n"
    )
    return tmp_path


def test_wheels_follow_the_targets(tmp_path: Path) -> None:
    spec = _spec(
        {"distro": "debian", "release": "12"},
        {"distro": "debian", "release": "13", "arches": ["amd64", "arm64"]},
        {"distro": "debian", "release": "11"},
        arches=["amd64", "arm64"],
    )
    plan = plan_deploy(spec, _kubespray(tmp_path, "2.18.0", "2.19.0"))
    assert plan.pythons == ("3.11", "3.13")
    assert plan.arches == ("amd64", "arm64")
    assert plan.packages_for(find_target("debian", "13")) == ("python3", "python3-venv")
    assert plan.packages_for(find_target("debian", "11")) == ()
    [warning] = plan.warnings()
    assert "debian 11 can be a cluster node but not the deploy node" in warning
    assert "Python 3.9" in warning and "debian 12, debian 13" in warning


def test_older_kubespray_drops_trixie(tmp_path: Path) -> None:
    spec = _spec({"distro": "debian", "release": "12"}, {"distro": "debian", "release": "13"})
    plan = plan_deploy(spec, _kubespray(tmp_path, "2.17.3", "2.18.0"))
    assert plan.pythons == ("3.11",)
    assert plan.capable == ["debian 12"]
    assert any("debian 13 can be a cluster node" in w and "3.11–3.12" in w for w in plan.warnings())


def test_no_os_targets_keeps_the_default_pythons() -> None:
    plan = plan_deploy(_spec(), None)
    assert plan.pythons == ("3.11", "3.12")
    assert plan.warnings() == []


def test_deploy_node_narrows_wheels_and_packages() -> None:
    spec = _spec(
        {"distro": "debian", "release": "12", "arches": ["amd64", "arm64"]},
        {"distro": "rocky", "release": "9"},
        arches=["amd64", "arm64"],
        deploy_node={"distro": "rocky", "release": 9},
    )
    plan = plan_deploy(spec, None)
    assert (plan.pythons, plan.arches) == (("3.12",), ("amd64",))
    assert plan.packages_for(find_target("rocky", "9")) == ("python3.12",)
    assert plan.packages_for(find_target("debian", "12")) == ()
    [keyless] = plan.warnings()
    assert "rocky 9: no os[].keyring, so install.sh cannot check the signatures of python3.12" in keyless
    table = deploy_table(plan)
    assert "rocky 9 - rpm 3.12 amd64 repos/rpm/rocky/9 python3.12\n" in table
    assert "debian 12 bookworm apt - amd64,arm64 repos/apt/debian/bookworm -\n" in table


@pytest.mark.parametrize(
    ("deploy_node", "message", "hint"),
    [
        ({"distro": "debian", "release": "11"}, "debian 11 can be a cluster node but not the deploy node", "debian 12"),
        ({"distro": "ubuntu", "release": "24.04"}, "ubuntu 24.04 is not one of the os: targets", "add ubuntu 24.04"),
        ({"distro": "debian", "release": "12", "arch": "arm64"}, "arm64 is not among debian 12's arches", "arm64"),
    ],
)
def test_deploy_node_bad_input(deploy_node: dict[str, str], message: str, hint: str) -> None:
    spec = _spec({"distro": "debian", "release": "11"}, {"distro": "debian", "release": "12"}, deploy_node=deploy_node)
    with pytest.raises(BadInput) as err:
        plan_deploy(spec, None)
    assert message in err.value.message
    assert hint in (err.value.hint or "")
    assert err.value.exit_code == 2


def test_rpm_target_with_its_package_key_has_no_warning() -> None:
    spec = _spec({"distro": "almalinux", "release": "9", "keyring": "RPM-GPG-KEY-AlmaLinux-9"})
    plan = plan_deploy(spec, None)
    assert plan.pythons == ("3.12",)
    assert plan.warnings() == []


def test_python_is_required_only_for_a_named_deploy_node() -> None:
    rocky = find_target("rocky", "9")
    candidates = plan_deploy(_spec({"distro": "rocky", "release": "9", "keyring": "k"}), None)
    assert candidates.python_packages(rocky) == ((), ("python3.12",))  # a mirror without it only warns
    note = candidates.missing_python(rocky, ["python3.12", "ebtables"])
    assert note is not None and "a rocky 9 deploy node must bring its own Python 3.12" in note
    assert candidates.missing_python(rocky, ["ebtables"]) is None
    named = plan_deploy(
        _spec({"distro": "rocky", "release": "9", "keyring": "k"}, deploy_node={"distro": "rocky", "release": "9"}),
        None,
    )
    assert named.python_packages(rocky) == (("python3.12",), ())  # absent from the mirror: the build stops
