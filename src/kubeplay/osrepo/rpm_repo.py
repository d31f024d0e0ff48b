"""Write rpm repos with createrepo_c: <basearch>/Packages/ and repodata/ (with modules), repomd signed.

Packages are copied unchanged, so they keep their upstream signatures; the distro's package key, when
os[].keyring names it, ships beside the repo for dnf's gpgcheck.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import createrepo_c as cr

from kubeplay.osrepo.rpm_target import RpmPlan
from kubeplay.osrepo.signing import BundleSigner


def write_basearch_repo(repo: Path, rpms: list[Path], modules_yaml: str | None, signer: BundleSigner) -> None:
    """repodata/ for the rpms under `repo` (gzip metadata: readable by EL8's dnf too); repomd.xml signed."""
    shutil.rmtree(repo / "repodata", ignore_errors=True)
    # gzip, not createrepo_c's zstd default: older dnf/librepo (EL8) cannot read zstd metadata.
    with cr.RepositoryWriter(str(repo), compression=cr.GZ_COMPRESSION, checksum_type=cr.SHA256) as writer:
        writer.set_num_of_pkgs(len(rpms))
        for rpm in sorted(rpms):
            writer.add_pkg_from_file(str(rpm))
        if modules_yaml is not None:
            with tempfile.TemporaryDirectory(prefix="kubeplay-modules-") as tmp:
                path = Path(tmp) / "modules.yaml"
                path.write_text(modules_yaml, encoding="utf-8")
                writer.add_repomd_metadata("modules", str(path))
    signer.detach_sign(repo / "repodata" / "repomd.xml", repo / "repodata" / "repomd.xml.asc")


def write_rpm_repo(root: Path, plan: RpmPlan, signer: BundleSigner, base_dir: Path) -> int:
    """Write one repo per basearch under root (files already placed); return the number of packages."""
    count = 0
    by_arch: dict[str, list[Path]] = {}
    for rel in plan.files:
        basearch = rel.split("/", 1)[0]
        by_arch.setdefault(basearch, []).append(root / rel)
    for basearch, rpms in sorted(by_arch.items()):
        write_basearch_repo(root / basearch, rpms, plan.modules.get(basearch), signer)
        count += len(rpms)
    if plan.keyring is not None:
        shutil.copyfile(plan.keyring, root / f"RPM-GPG-KEY-{plan.target.distro}")
    return count
