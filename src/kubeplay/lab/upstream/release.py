"""A kubespray release on the simulator: everything the catalog's plan for a tree needs, served on loopback.

    release = serve_release(sim, Path("kubespray-v2.31.0.tar.gz"), arches=["amd64"])
    spec = release.bundle_spec(sim.mirrors(), sim.credentials_file(workdir / "credentials.yaml"))

The plan is the one `kubeplay build` makes for the same tree and arches (the catalog's default choices:
calico, containerd), so a build from `spec` finds every file and image it asks for. `kubeplay demo`, the
hand-run simulator (`python -m kubeplay.lab.upstream`) and the tests all serve releases this way.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeplay.catalog.examples import example_tree_path, newest_release_archive
from kubeplay.catalog.model import Plan
from kubeplay.catalog.planner import make_plan
from kubeplay.catalog.source import load_tree
from kubeplay.config.bundle import BundleSpec
from kubeplay.lab.upstream.images import ImageInfo
from kubeplay.lab.upstream.kubespray import KubesprayArchive
from kubeplay.lab.upstream.simulator import UpstreamSimulator


@dataclass
class ServedRelease:
    """What serve_release put on the simulator, and what a bundle.yaml needs to build from it."""

    version: str  # v2.31.0
    arches: list[str]  # the arches the files were planned for
    kube_version: str | None  # the Kubernetes version planned (None: the release's default)
    plan: Plan  # the plan of the original tree (its checksums are upstream's, not the served files')
    archive: KubesprayArchive  # the re-checksummed release, served at archive.url
    images: dict[str, ImageInfo] = field(default_factory=dict)  # upstream reference -> what was pushed
    pinned: list[str] = field(default_factory=list)  # digest-only references no synthetic image can match

    def bundle_spec(self, mirrors: dict[str, Any], credentials_file: Path | str) -> dict[str, Any]:
        """bundle.yaml as data: this release from the simulated GitHub, its arches, every host mirrored."""
        spec: dict[str, Any] = {
            "kubespray": {"version": self.version, "source": self.archive.url, "sha256": self.archive.sha256},
            "arches": list(self.arches),
            "mirrors": mirrors,
            "credentials_file": str(credentials_file),
        }
        if self.kube_version:
            spec["kube_version"] = self.kube_version
        return spec


def default_kubespray_source() -> tuple[Path, bool]:
    """(the newest kubespray release in ../shared, True), else (the built-in example tree, False)."""
    archive = newest_release_archive()
    return (archive, True) if archive is not None else (example_tree_path(), False)


def serve_release(
    sim: UpstreamSimulator,
    source: Path,
    *,
    arches: Sequence[str] = ("amd64",),
    image_arches: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    layer_kib: int = 64,
    kube_version: str | None = None,
) -> ServedRelease:
    """Plan `source` (a kubespray directory or release .tar.gz) for `arches` and serve all of it.

    Every planned file gets a synthetic payload, the release is re-checksummed to match and served at
    GitHub's tag URL, and every tagged image is pushed for `image_arches` (default: `arches`). A directory
    not named kubespray-<X.Y.Z> (the built-in example tree) is copied under the simulator's workdir with
    that name first: the release is named after its top directory, as GitHub's archives are. Returns the
    ServedRelease; raises CatalogError/BadInput for a tree the catalog cannot read. `kube_version`: plan
    that Kubernetes version instead of the release's default (one its checksums carry).
    """
    (served,) = serve_release_versions(
        sim, source, [kube_version], arches=arches, image_arches=image_arches, cache_dir=cache_dir, layer_kib=layer_kib
    )
    return served


def serve_release_versions(
    sim: UpstreamSimulator,
    source: Path,
    kube_versions: Sequence[str | None],
    *,
    arches: Sequence[str] = ("amd64",),
    image_arches: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    layer_kib: int = 64,
) -> list[ServedRelease]:
    """serve_release for several Kubernetes versions of one release (None: its default): one archive whose
    checksums match the files of every version (a patch upgrade's two bundles build from the same tag)."""
    tree = load_tree(source, cache_dir=cache_dir)
    version = tree.version or "v0.0.0"
    named = f"kubespray-{version.removeprefix('v')}"
    if source.is_dir() and source.name != named:
        copy = sim.workdir / "source" / named
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(source, copy, symlinks=True)
        source = copy
    plans: list[tuple[str | None, Plan, list[str]]] = []
    for kube in kube_versions:
        raw: dict[str, Any] = {"kubespray": {"version": version, "source": str(source)}, "arches": arches}
        if kube:
            raw["kube_version"] = kube
        spec = BundleSpec.model_validate(raw)
        plans.append((kube, make_plan(spec, tree), list(spec.arches)))
    archive = sim.add_kubespray(source, plan_files=[f for _, plan, _ in plans for f in plan.files])
    served = []
    for kube, plan, planned_arches in plans:
        pushed, pinned = sim.push_plan_images(plan.images, list(image_arches or arches), layer_kib=layer_kib)
        served.append(
            ServedRelease(
                version=version,
                arches=planned_arches,
                kube_version=kube,
                plan=plan,
                archive=archive,
                images=pushed,
                pinned=pinned,
            )
        )
    return served
