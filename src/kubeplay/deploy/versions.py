"""Which bundle a cluster command works with, what a cluster runs, and which upgrades kubespray allows.

A cluster is a config.yaml and its state directory, whose record (deploy/record.py) says what the nodes
were given, so every later command picks the same served version and `kubeplay upgrade` knows where the
cluster stands. The rules of
the upgrade path are kubespray's and kubeadm's: one Kubernetes minor at a time, and one kubespray minor at a
time (kubespray upgrades only from its previous release); never back.

This module reads the served set through kubeplay.bootstrap.served (the install side owns it).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeplay.bootstrap.bundleinfo import BundleFacts, read_bundle
from kubeplay.bootstrap.paths import HostPaths
from kubeplay.bootstrap.served import ServedVersion, find_version, served_versions
from kubeplay.bundle.inventory import identity_of
from kubeplay.bundle.manifest import MANIFEST_NAME, SUMS_NAME, read_sha256sums
from kubeplay.bundle.wheels import ansible_core_range
from kubeplay.deploy.record import CLUSTER_RECORD, ClusterRecord, kubespray_version, read_record, record_path
from kubeplay.errors import BadInput, BundleError

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, order=True)
class Version:
    """A Kubernetes or kubespray version as (major, minor, patch): "v1.35.4", "1.35.4", "2.31.0"."""

    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> Version | None:
        """The version at the start of `text`, or None when it names none."""
        m = _VERSION.match(text.strip())
        return cls(int(m[1]), int(m[2]), int(m[3] or 0)) if m else None

    @property
    def minor_line(self) -> str:
        return f"{self.major}.{self.minor}.x"

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def parse_version(text: str, what: str) -> Version:
    v = Version.parse(text)
    if v is None:
        raise BundleError(f"{what}: {text!r} is not a version", hint="run `kubeplay verify` on the bundle")
    return v


def record_version(record: ClusterRecord) -> Version:
    return parse_version(record.kube_version, CLUSTER_RECORD)


@dataclass(frozen=True)
class ServedPaths(HostPaths):
    """HostPaths whose served set is the directory given on the command line (`--served`)."""

    served_dir: Path = Path("/var/lib/kubeplay/served")

    @property
    def served(self) -> Path:
        return self.served_dir


# --- which bundle a cluster command uses ----------------------------------------------------------------


def describe_served(versions: Sequence[ServedVersion]) -> str:
    return ", ".join(v.describe() for v in versions) or "nothing (no bundle installed)"


def _bundle_dir_default(config: Path) -> Path:
    for candidate in (config.resolve().parent, Path.cwd()):
        if (candidate / MANIFEST_NAME).exists():
            return candidate
    return Path.cwd()


def _served_by_identity(versions: Sequence[ServedVersion], record: ClusterRecord) -> ServedVersion | None:
    exact = [v for v in versions if v.identity == record.bundle]
    same = [v for v in versions if Version.parse(v.kube_version) == record_version(record)]
    found = exact or same
    return found[-1] if found else None


def choose_bundle(
    config: Path,
    state_dir: Path,
    served: HostPaths,
    *,
    bundle_dir: Path | None = None,
    version: str | None = None,
    command: str = "deploy",
) -> BundleFacts:
    """The bundle a cluster command works with; BadInput (nothing touched) when the choice is not clear.

    `--bundle DIR` wins. Else, when the deploy node serves versions: the one the cluster's record names,
    else `--version`, else the only one served. Without a served set: the bundle beside config.yaml or in `.`.
    """
    record = read_record(state_dir)
    versions = served_versions(served)
    if bundle_dir is not None:
        bundle = read_bundle(bundle_dir.resolve())
        _check_asked(bundle.kube_version, version, f"the bundle in {bundle_dir}")
        if not versions:
            return bundle
        # Nodes fetch from what the deploy node serves (repos signed by its own key), not from the directory.
        identity = identity_of((bundle.root / MANIFEST_NAME).read_bytes())
        same = [v for v in versions if v.identity == identity]
        if not same:
            raise BadInput(
                f"--bundle {bundle_dir}: Kubernetes {bundle.kube_version} ({identity[:12]}) is not served by this "
                f"deploy node, which serves {describe_served(versions)}",
                hint=f"install it first (./install.sh in {bundle_dir}), or leave out --bundle",
            )
        return same[-1].facts()
    if not versions:
        bundle = read_bundle(_bundle_dir_default(config))
        _check_asked(bundle.kube_version, version, f"the bundle in {bundle.root}")
        return bundle
    if record is not None:
        if record.upgrading_to and command != "reset":
            raise BadInput(
                f"the cluster of {state_dir} is being upgraded from Kubernetes {record.kube_version} to "
                f"{record.upgrading_to}; {command} would work with the old version",
                hint=f"finish it first: kubeplay upgrade -c {config} --state-dir {state_dir} --to {record.upgrading_to}",
            )
        chosen = _served_by_identity(versions, record)
        if chosen is None:
            raise BadInput(
                f"the cluster of {state_dir} runs Kubernetes {record.kube_version} (kubespray "
                f"{record.kubespray_version or '?'}), which this deploy node no longer serves; it serves "
                f"{describe_served(versions)}",
                hint=f"install the bundle of Kubernetes {record.kube_version} again, or "
                f"`kubeplay upgrade -c {config} --state-dir {state_dir} --to VERSION` to a served version",
            )
        if version is not None and Version.parse(version) != record_version(record):
            raise BadInput(
                f"--version {version}: the cluster of {state_dir} runs Kubernetes {record.kube_version}",
                hint=f"to move it to {version}: kubeplay upgrade -c {config} --state-dir {state_dir} --to {version}",
            )
        return chosen.facts()
    if version is not None:
        return find_version(served, version).facts()
    if len(versions) == 1:
        return versions[0].facts()
    raise BadInput(
        f"this deploy node serves several versions and {state_dir} records no cluster: {describe_served(versions)}",
        hint=f"say which with --version, e.g. kubeplay {command} -c {config} --version {versions[-1].kube_version}",
    )


def _check_asked(have: str, asked: str | None, where: str) -> None:
    if asked is not None and Version.parse(asked) != Version.parse(have):
        raise BadInput(
            f"--version {asked}: {where} carries Kubernetes {have}",
            hint="leave out --version, or use the bundle of that version",
        )


# --- the upgrade path -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterVersion:
    """Where the cluster stands: its Kubernetes version and the kubespray release that put it there."""

    kube: Version
    kubespray: Version | None
    source: str  # "the deploy record in DIR" or "the nodes (kubelet --version)"


def working_targets(current: ClusterVersion, versions: Sequence[ServedVersion]) -> list[ServedVersion]:
    """The served versions an upgrade from `current` may go to next."""
    ok = []
    for v in versions:
        try:
            check_step(current, v)
        except BadInput:
            continue
        ok.append(v)
    return ok


def _targets_text(current: ClusterVersion, versions: Sequence[ServedVersion]) -> str:
    ok = working_targets(current, versions)
    return ", ".join(v.describe() for v in ok) if ok else "none"


def check_step(current: ClusterVersion, target: ServedVersion) -> None:
    """Raise BadInput when kubespray/kubeadm cannot go from `current` to `target` in one upgrade."""
    kube = parse_version(target.kube_version, f"served version {target.identity[:12]}")
    have = current.kube
    if kube == have:
        raise BadInput(f"the cluster already runs Kubernetes {have} ({current.source}): nothing to do")
    if kube < have:
        raise BadInput(
            f"Kubernetes {kube} is older than the cluster's {have} ({current.source}): kubespray and kubeadm "
            "do not downgrade"
        )
    if kube.major != have.major or kube.minor > have.minor + 1:
        step = Version(have.major, have.minor + 1)
        raise BadInput(
            f"Kubernetes {kube} skips a minor version: the cluster runs {have} ({current.source}); "
            f"upgrade to {step.minor_line} first (kubeadm upgrades one minor at a time)"
        )
    spray = Version.parse(target.kubespray_version)
    if current.kubespray is not None and spray is not None:
        was = current.kubespray
        if spray < was:
            raise BadInput(
                f"Kubernetes {kube} is served with kubespray v{spray}, older than the kubespray v{was} that "
                "deployed the cluster: kubespray does not go back"
            )
        if spray.major != was.major or spray.minor > was.minor + 1:
            raise BadInput(
                f"Kubernetes {kube} is served with kubespray v{spray}, but the cluster was deployed with "
                f"kubespray v{was}: kubespray upgrades only from its previous release; upgrade with a "
                f"kubespray v{was.major}.{was.minor + 1}.x bundle first"
            )


def check_upgrade_path(current: ClusterVersion, target: ServedVersion, versions: Sequence[ServedVersion]) -> None:
    """check_step, with a hint naming the served versions that would work."""
    try:
        check_step(current, target)
    except BadInput as exc:
        if exc.message.endswith("nothing to do"):
            raise BadInput(
                exc.message, hint="to re-run steps of that upgrade anyway, add --from STEP or --only STEP"
            ) from None
        raise BadInput(exc.message, hint=f"served versions that work: {_targets_text(current, versions)}") from None


def find_target(served: HostPaths, version: str, current: ClusterVersion | None) -> ServedVersion:
    """The served version `version`; BadInput naming what is served and, given `current`, what would work."""
    try:
        return find_version(served, version)
    except BadInput as exc:
        if current is None:
            raise
        works = _targets_text(current, served_versions(served))
        raise BadInput(
            exc.message,
            hint=f"install its bundle (or delta) first: ./install.sh in its directory; "
            f"served versions that work from {current.kube}: {works}",
        ) from None


def current_from_record(state_dir: Path, config: Path) -> ClusterVersion:
    """The cluster's version from its deploy record; BadInput when there is none."""
    record = read_record(state_dir)
    if record is None:
        raise BadInput(
            f"{record_path(state_dir)}: no deploy recorded, so the cluster's version is unknown",
            hint="give the --state-dir the cluster was deployed with; a cluster deployed before kubeplay kept "
            f"records gets one from `kubeplay deploy -c {config} --state-dir DIR --bundle ITS_BUNDLE` "
            "(with every step done, it only records the version)",
        )
    return ClusterVersion(
        record_version(record), Version.parse(record.kubespray_version), f"the deploy record in {state_dir}"
    )


INDEX_PARTS = ("/dists/", "/repodata/")


def repos_signature(bundle: BundleFacts) -> dict[str, Any]:
    """What node prep puts on a node for the OS repos of `bundle`: which repos, which key, which packages
    (path -> sha256 from the bundle's full SHA256SUMS; indexes left out, they are re-made for the union)."""
    repos = [
        {k: v for k, v in r.items() if k in ("family", "distro", "release", "path", "arches")}
        for r in bundle.manifest.get("os_repos", []) or []
        if isinstance(r, dict)
    ]
    sums = (bundle.kubespray_root or bundle.root) / SUMS_NAME
    content = {}
    if sums.is_file():
        content = {
            p: d
            for p, d in read_sha256sums(sums).items()
            if p.startswith("repos/") and not any(x in p for x in INDEX_PARTS)
        }
    return {"repos": sorted(repos, key=lambda r: json.dumps(r, sort_keys=True)), "content": content}


# --- the Ansible a kubespray release runs with -----------------------------------------------------------


def installed_ansible_core() -> str | None:
    """The ansible-core version of this Python environment (the one ansible-playbook beside it comes from)."""
    try:
        return importlib.metadata.version("ansible-core")
    except importlib.metadata.PackageNotFoundError:
        return None


def check_ansible(bundle: BundleFacts, have: str | None) -> None:
    """Raise BadInput when ansible-core `have` is outside the range the bundle's kubespray accepts
    (playbooks/ansible_version.yml; kubespray would stop in its first play, after node prep)."""
    tree = bundle.kubespray_dir
    if have is None or not (tree / "playbooks" / "ansible_version.yml").is_file():
        return
    low_high = ansible_core_range(tree).removeprefix(">=").split(",<")
    low, high, version = (Version.parse(x) for x in (*low_high, have)) if len(low_high) == 2 else (None, None, None)
    if low is None or high is None or version is None or low <= version < high:
        return
    spray = kubespray_version(bundle) or tree.name
    raise BadInput(
        f"kubespray {spray} (Kubernetes {bundle.kube_version}) runs with ansible-core >={low_high[0]},<{low_high[1]}; "
        f"this kubeplay's environment ({sys.prefix}) has ansible-core {have}; nothing was changed on any host",
        hint="one venv holds one kubespray's Ansible, the one of the bundle whose install.sh made it last: run this "
        "command from a venv made from the wheels of that version's bundle (KUBEPLAY_VENV=DIR KUBEPLAY_LINK= "
        "KUBEPLAY_COMMAND=COMMAND ./install.sh ARGS... in its directory), or upgrade the cluster to a version "
        "this Ansible runs",
    )
