"""Which machine can be the deploy node, and the Python it runs kubeplay and Ansible with.

kubespray's pinned Ansible runs on a range of CPython versions (ansible-core's controller matrix), and
kubeplay itself needs 3.11 or newer. For each `os:` target (or the one `deploy_node:` names) the build
picks one Python the distro packages inside that range: the release's default `python3` where it fits,
otherwise the newest one its repos carry (AppStream on EL, universe on Ubuntu 22.04). The bundle then
carries wheels for those Pythons and, in that target's OS repo, the packages that provide the interpreter
with its venv module, so install.sh can bring the Python up from the bundle alone. A release whose repos
have no Python in the range (Debian 11, openEuler 22.03) can be a cluster node, never the deploy node.

The tables below are data, checked against each distro's archive (package names as the repos spell them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from kubeplay.bundle.wheels import DEFAULT_PYTHONS, FALLBACK_ANSIBLE_CORE, ansible_core_range
from kubeplay.config.bundle import BundleSpec
from kubeplay.errors import BadInput
from kubeplay.osrepo.targets import Target, find_target, repo_dir

KUBEPLAY_MIN_PYTHON = (3, 11)  # pyproject.toml's requires-python
TABLE_NAME = "deploy-node.txt"

# ansible-core minor -> the controller Pythons it supports (inclusive), from ansible-core's support matrix.
ANSIBLE_CORE_PYTHONS: dict[str, tuple[str, str]] = {
    "2.15": ("3.9", "3.11"),
    "2.16": ("3.10", "3.12"),
    "2.17": ("3.10", "3.12"),
    "2.18": ("3.11", "3.13"),
    "2.19": ("3.11", "3.13"),
    "2.20": ("3.12", "3.14"),
}


@dataclass(frozen=True)
class DistroPython:
    """One CPython a distro release packages, and the packages that give the interpreter plus venv."""

    version: str
    packages: tuple[str, ...]
    default: bool = False  # the release's python3
    where: str = ""  # the repo it comes from when it is not the default one


_DEB = ("python3", "python3-venv")  # Debian/Ubuntu split the venv module (ensurepip) out of the interpreter
# EL: python3.11/python3.12 (AppStream) carry venv in their -libs, which they require.
_EL8 = (
    DistroPython("3.6", ("python3",), default=True),
    DistroPython("3.11", ("python3.11",), where="AppStream"),
    DistroPython("3.12", ("python3.12",), where="AppStream"),
)
_EL9 = (
    DistroPython("3.9", ("python3",), default=True),
    DistroPython("3.11", ("python3.11",), where="AppStream"),
    DistroPython("3.12", ("python3.12",), where="AppStream"),
)
DISTRO_PYTHONS: dict[tuple[str, str], tuple[DistroPython, ...]] = {
    ("debian", "11"): (DistroPython("3.9", _DEB, default=True),),
    ("debian", "12"): (DistroPython("3.11", _DEB, default=True),),
    ("debian", "13"): (DistroPython("3.13", _DEB, default=True),),
    ("ubuntu", "22.04"): (
        DistroPython("3.10", _DEB, default=True),
        DistroPython("3.11", ("python3.11", "python3.11-venv"), where="universe"),
    ),
    ("ubuntu", "24.04"): (DistroPython("3.12", _DEB, default=True),),
    ("rocky", "8"): _EL8,
    ("almalinux", "8"): _EL8,
    ("rhel", "8"): _EL8,
    ("rocky", "9"): _EL9,
    ("almalinux", "9"): _EL9,
    ("rhel", "9"): _EL9,
    ("openeuler", "22.03"): (DistroPython("3.9", ("python3",), default=True),),
    ("openeuler", "24.03"): (DistroPython("3.11", ("python3",), default=True),),
}


def version_key(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


@dataclass(frozen=True)
class PythonRange:
    """The CPython versions kubeplay and the bundle's Ansible both run on (inclusive)."""

    low: str
    high: str
    ansible_core: str

    def __contains__(self, version: object) -> bool:
        return isinstance(version, str) and version_key(self.low) <= version_key(version) <= version_key(self.high)

    @property
    def label(self) -> str:
        return f"{self.low}–{self.high}"


def python_range(ansible_core_spec: str) -> PythonRange:
    """The Python range for a pip range like `>=2.18.0,<2.19.0`; BadInput for an ansible-core kubeplay has no
    row for (add it to ANSIBLE_CORE_PYTHONS)."""
    found = re.search(r">=\s*(\d+)\.(\d+)", ansible_core_spec)
    if found is None:
        raise BadInput(f"ansible-core range {ansible_core_spec!r} has no lower bound")
    minor = f"{found.group(1)}.{found.group(2)}"
    if minor not in ANSIBLE_CORE_PYTHONS:
        raise BadInput(
            f"kubeplay does not know which Pythons ansible-core {minor} runs on",
            hint=f"known: ansible-core {', '.join(ANSIBLE_CORE_PYTHONS)}; use a kubespray release pinning one of them",
        )
    low, high = ANSIBLE_CORE_PYTHONS[minor]
    floor = ".".join(map(str, KUBEPLAY_MIN_PYTHON))
    if version_key(low) < KUBEPLAY_MIN_PYTHON:
        low = floor
    return PythonRange(low, high, minor)


def pick_python(target: Target, supported: PythonRange) -> DistroPython | None:
    """The release's default Python when `supported` has it, else the newest it packages there, else None."""
    offers = [p for p in DISTRO_PYTHONS.get((target.distro, target.release), ()) if p.version in supported]
    default = next((p for p in offers if p.default), None)
    if default is not None:
        return default
    return max(offers, key=lambda p: version_key(p.version)) if offers else None


@dataclass(frozen=True)
class DeployChoice:
    """One os: target as a deploy node: the Python it gets, or None and why not."""

    target: Target
    arches: tuple[str, ...]
    python: DistroPython | None
    why_not: str = ""


@dataclass(frozen=True)
class DeployPlan:
    """What the bundle carries for the deploy node: wheel Pythons and arches, and each target's Python packages."""

    supported: PythonRange
    choices: tuple[DeployChoice, ...]
    pythons: tuple[str, ...]
    arches: tuple[str, ...]
    named: bool = False  # deploy_node: in bundle.yaml chose one target
    notes: tuple[str, ...] = ()  # further warnings (rpm deploy nodes without a package key)

    def packages_for(self, target: Target) -> tuple[str, ...]:
        """The OS packages giving `target` its deploy-node Python (empty when it is not a deploy node)."""
        for c in self.choices:
            if c.target == target and c.python is not None:
                return c.python.packages
        return ()

    def python_packages(self, target: Target) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(required, optional) Python packages for `target`'s repo: required for the deploy_node: bundle.yaml
        names, optional for a target that may be the deploy node (a mirror without them only warns)."""
        packages = self.packages_for(target)
        return (packages, ()) if self.named else ((), packages)

    def missing_python(self, target: Target, skipped: Sequence[str]) -> str | None:
        """The warning for a target whose repos lacked (some of) its Python packages, else None."""
        missing = [p for p in self.packages_for(target) if p in skipped]
        if not missing:
            return None
        return (
            f"{target.label}: {', '.join(missing)} not in its repos, so a {target.label} deploy node must bring its "
            f"own Python {self.python_of(target)} (install.sh cannot install it from the bundle)"
        )

    def python_of(self, target: Target) -> str:
        """The deploy-node Python version of `target` ("" when it is not a deploy node)."""
        return next((c.python.version for c in self.choices if c.target == target and c.python), "")

    @property
    def capable(self) -> list[str]:
        return [c.target.label for c in self.choices if c.python is not None]

    def warnings(self) -> list[str]:
        """One line per os: target that cannot be the deploy node (with what can), for build and plan output."""
        lines = []
        can = ", ".join(self.capable) or "none of them"
        for c in self.choices:
            if c.python is None and not self.named:
                lines.append(f"{c.target.label} can be a cluster node but not the deploy node ({c.why_not}); "
                             f"the deploy node can be: {can}")  # fmt: skip
        lines += self.notes
        if self.choices and not self.capable:
            lines.append(
                f"no os: target can be the deploy node; wheels/ holds Python {', '.join(self.pythons)} for a deploy "
                "node whose Python you install yourself"
            )
        return lines


def _why_not(target: Target, supported: PythonRange) -> str:
    offers = DISTRO_PYTHONS.get((target.distro, target.release), ())
    have = ", ".join(p.version for p in offers) or "none known to kubeplay"
    return f"its repos have Python {have}; kubeplay with ansible-core {supported.ansible_core} needs {supported.label}"


def plan_deploy(spec: BundleSpec, kubespray_dir: Path | None) -> DeployPlan:
    """Decide the deploy node's Python from spec.os (or spec.deploy_node) and the kubespray tree's Ansible.

    Raises BadInput when deploy_node names a target that is not under os:, an arch that target lacks, or a
    release with no Python kubespray's Ansible runs on.
    """
    spec_range = ansible_core_range(kubespray_dir) if kubespray_dir is not None else FALLBACK_ANSIBLE_CORE
    supported = python_range(spec_range)
    choices = []
    for os_target in spec.os:
        target = find_target(os_target.distro, os_target.release)
        python = pick_python(target, supported)
        why = "" if python else _why_not(target, supported)
        choices.append(DeployChoice(target, tuple(os_target.arches), python, why))
    if spec.deploy_node is not None:
        plan = _named(spec, supported, choices)
    else:
        pythons = sorted({c.python.version for c in choices if c.python}, key=version_key)
        if not pythons:  # no os: targets, or none with a usable Python: the deploy node brings its own
            pythons = [p for p in DEFAULT_PYTHONS if p in supported] or [supported.low]
        plan = DeployPlan(supported, tuple(choices), tuple(pythons), tuple(spec.arches))
    return replace(plan, notes=_keyless(spec, plan))


def _keyless(spec: BundleSpec, plan: DeployPlan) -> tuple[str, ...]:
    """rpm deploy nodes whose bundle carries no distro package key: install.sh refuses to install unverified."""
    notes = []
    for os_target in spec.os:
        target = find_target(os_target.distro, os_target.release)
        packages = plan.packages_for(target)
        if target.family == "rpm" and packages and os_target.keyring is None:
            notes.append(
                f"{target.label}: no os[].keyring, so install.sh cannot check the signatures of {', '.join(packages)} "
                f"and a {target.label} deploy node must bring its own Python {plan.python_of(target)}; set "
                f"os[].keyring to {target.distro}'s RPM-GPG-KEY file"
            )
    return tuple(notes)


def _named(spec: BundleSpec, supported: PythonRange, choices: Sequence[DeployChoice]) -> DeployPlan:
    node = spec.deploy_node
    assert node is not None
    target = find_target(node.distro, node.release)
    choice = next((c for c in choices if c.target == target), None)
    if choice is None:
        listed = ", ".join(c.target.label for c in choices) or "none"
        raise BadInput(
            f"deploy_node: {target.label} is not one of the os: targets ({listed})",
            hint=f"add {target.label} under os: (the deploy node installs its packages from that repo)",
        )
    if choice.python is None:
        others = [c.target.label for c in choices if c.python is not None]
        raise BadInput(
            f"deploy_node: {target.label} can be a cluster node but not the deploy node ({choice.why_not})",
            hint="the deploy node can be: " + (", ".join(others) if others else "an os: target such as debian 12"),
        )
    arch = node.arch or choice.arches[0]
    if arch not in choice.arches:
        raise BadInput(
            f"deploy_node.arch {arch} is not among {target.label}'s arches ({', '.join(choice.arches)})",
            hint=f"add {arch} to that os: target's arches",
        )
    picked = DeployChoice(target, (arch,), choice.python)
    rest = tuple(
        DeployChoice(c.target, c.arches, None, "bundle.yaml names another deploy_node")
        for c in choices
        if c is not choice
    )
    return DeployPlan(supported, (picked, *rest), (choice.python.version,), (arch,), named=True)


def deploy_table(plan: DeployPlan) -> str:
    """deploy-node.txt: what install.sh reads to bring up Python from the bundle (one os: target per line).

    Fields: distro release codename family python arches repo packages...; `-` for none. A target whose
    python is `-` has a repo for cluster nodes but cannot be the deploy node.
    """
    lines = [
        "# kubeplay: which OS can be the deploy node, and the packages giving it Python (read by install.sh)\n",
        "# distro release codename family python arches repo packages...\n",
    ]
    for c in plan.choices:
        t = c.target
        python = c.python.version if c.python else "-"
        packages = " ".join(c.python.packages) if c.python else "-"
        fields = [t.distro, t.release, t.codename or "-", t.family, python, ",".join(c.arches), repo_dir(t), packages]
        lines.append(" ".join(fields) + "\n")
    return "".join(lines)
