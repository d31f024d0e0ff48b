"""What the deploy node needs before kubeplay runs there: install.sh, config-sample.yaml, wheels/ and
deploy-node.txt (which OS can be the deploy node, and the packages of its repo that give it Python).

`add_install_files` is called by the build after everything else is in the bundle and before
SHA256SUMS is written, so these files are covered by the sums like every other file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from kubeplay.bundle.wheels import DEFAULT_PYTHONS, WheelsResult, download_wheels, targets_for
from kubeplay.state import atomic_write

INSTALL_SCRIPT = "install.sh"
DEPLOY_TABLE = "deploy-node.txt"
CONFIG_SAMPLE = "config-sample.yaml"


def _packaged(name: str) -> str:
    return resources.files("kubeplay.bundle").joinpath(name).read_text(encoding="utf-8")


def render_config_sample(kube_version: str, registry_project: str = "library") -> str:
    """config-sample.yaml with this bundle's Kubernetes version and registry project filled in."""
    return Template(_packaged(CONFIG_SAMPLE)).substitute(
        kube_version=kube_version.removeprefix("v"), registry_project=registry_project
    )


@dataclass
class InstallFiles:
    install_script: Path
    config_sample: Path
    wheels: WheelsResult | None
    deploy_table: Path | None = None


def add_install_files(
    bundle_dir: Path,
    *,
    kube_version: str,
    arches: Sequence[str],
    registry_project: str = "library",
    pythons: Sequence[str] = DEFAULT_PYTHONS,
    cache_dir: Path | None = None,
    kubespray_dir: Path | None = None,
    with_wheels: bool = True,
    deploy_table: str | None = None,
) -> InstallFiles:
    """Write install.sh (0755), config-sample.yaml, wheels/ and deploy-node.txt (`deploy_table`, from
    osrepo.deploy_python; without it, none) into `bundle_dir`; return their paths.

    Raises BadInput for an arch or Python version without wheels, BundleError when pip cannot resolve
    binary wheels for a target (the message names the target and pip's complaint).
    """
    script = bundle_dir / INSTALL_SCRIPT
    atomic_write(script, _packaged(INSTALL_SCRIPT).encode(), mode=0o755)
    sample = bundle_dir / CONFIG_SAMPLE
    atomic_write(sample, render_config_sample(kube_version, registry_project).encode())
    table = bundle_dir / DEPLOY_TABLE
    if deploy_table is None:
        table.unlink(missing_ok=True)
    else:
        atomic_write(table, deploy_table.encode())
    wheels = None
    if with_wheels:
        wheels = download_wheels(
            bundle_dir, targets_for(arches, pythons), kubespray_dir=kubespray_dir, cache_dir=cache_dir
        )
    return InstallFiles(script, sample, wheels, table if deploy_table is not None else None)
