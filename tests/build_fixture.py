"""Helpers for `kubeplay build` integration tests: a tiny kubespray archive, plans, bundle.yaml, a registry
serving the built bundle, and skopeo. The plan is handed to the build directly (the catalog has its own
tests); the conformance test uses the real kubespray release from ../shared with the real planner.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from kubeplay.assemble.pipeline import BuildOptions, BuildResult, run_build
from kubeplay.catalog.model import Checksum, FileArtifact, ImageArtifact, Plan
from kubeplay.config.bundle import BundleSpec, load_bundle_spec
from kubeplay.console import Output
from kubeplay.fetch.http import Downloader
from kubeplay.lab.upstream import UpstreamSimulator
from kubeplay.lab.upstream.process import free_port, start_process
from kubeplay.osrepo import OsRepoReport, build_os_repos

KUBESPRAY_VERSION = "2.99.0"
REGISTRY_BINARY = "/usr/bin/docker-registry"


def kubespray_archive(directory: Path) -> tuple[Path, str]:
    """A GitHub-style kubespray-<v>.tar.gz with the files load_tree checks for; returns (path, sha256)."""
    top = f"kubespray-{KUBESPRAY_VERSION}"
    members = {
        "galaxy.yml": f"version: {KUBESPRAY_VERSION}\n",
        "roles/kubespray_defaults/defaults/main/main.yml": "kube_version: 1.31.1\n",
        "roles/kubespray_defaults/defaults/main/download.yml": "downloads: {}\n",
        "roles/kubespray_defaults/vars/main/checksums.yml": "kubelet_checksums: {}\n",
        "README.md": "kubespray\n",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime, info.mode = len(data), 1700000000, 0o644
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(f"{top}/docs/readme-link.md")
        link.type, link.linkname, link.mtime = tarfile.SYMTYPE, "../README.md", 1700000000
        tar.addfile(link)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"kubespray-v{KUBESPRAY_VERSION}.tar.gz"
    path.write_bytes(buf.getvalue())
    return path, hashlib.sha256(buf.getvalue()).hexdigest()


def file_artifact(
    url: str, data: bytes, *, name: str = "file", arch: str = "amd64", sha512: bool = False
) -> FileArtifact:
    host_path = url.removeprefix("https://")
    checksum = (
        Checksum(algorithm="sha512", hex=hashlib.sha512(data).hexdigest())
        if sha512
        else Checksum(algorithm="sha256", hex=hashlib.sha256(data).hexdigest())
    )
    return FileArtifact(
        name=name, arch=arch, url=url, checksum=checksum, path=f"files/{host_path}", variable=f"{name}_download_url"
    )


def image_artifact(ref: str, *, name: str = "image", project: str = "library") -> ImageArtifact:
    repo_part, tag = ref.rsplit(":", 1)
    registry, repository = repo_part.split("/", 1)
    return ImageArtifact(
        name=name,
        upstream=ref,
        registry=registry,
        repository=repository,
        tag=tag,
        bundle_repository=f"{project}/{registry}/{repository}",
        arches=("amd64", "arm64"),
        variable=f"{name}_image_repo",
    )


def make_plan(files: Sequence[FileArtifact], images: Sequence[ImageArtifact], kube_version: str = "1.31.1") -> Plan:
    return Plan(
        kubespray_version=f"v{KUBESPRAY_VERSION}",
        kube_version=kube_version,
        arches=("amd64", "arm64"),
        files=tuple(files),
        images=tuple(images),
        offline_vars={"files_repo": "https://kubeplay.local/files"},
    )


def write_spec(
    directory: Path,
    sim: UpstreamSimulator,
    source: str,
    sha256: str,
    *,
    mirrors: dict[str, Any] | None = None,
    platform_policy: str = "strict",
) -> Path:
    spec = {
        "kubespray": {"version": f"v{KUBESPRAY_VERSION}", "source": source, "sha256": sha256},
        "kube_version": "1.31.1",
        "arches": ["amd64", "arm64"],
        "platform_policy": platform_policy,
        "mirrors": mirrors if mirrors is not None else sim.mirrors(),
        "credentials_file": str(sim.credentials_file(directory / "credentials.yaml")),
    }
    path = directory / "bundle.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def build_with_plan(spec_path: Path, out: Path, plan: Plan, **options: Any) -> BuildResult:
    """run_build of the bundle.yaml at `spec_path` into `out`, quietly, with `plan` in place of the catalog's."""
    build_options = BuildOptions(jobs=4, progress=False, planner=lambda spec, tree: plan, **options)
    return run_build(load_bundle_spec(spec_path), out, build_options, out=Output(quiet=True))


def os_repos_quietly(spec: BundleSpec, bundle: Path, cache_dir: Path, **downloader: Any) -> OsRepoReport:
    """`build_os_repos` with nothing printed; `downloader` options (retries=, timeout=) go to its Downloader."""
    out = Output(quiet=True)
    return build_os_repos(spec, bundle, Downloader(out=out, progress=False, **downloader), out=out, cache_dir=cache_dir)


@contextmanager
def bundle_registry(bundle: Path, sim: UpstreamSimulator, workdir: Path) -> Iterator[str]:
    """The real distribution registry serving `<bundle>/registry` read-only over TLS; yields host:port."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(bundle / "registry")},
            "maintenance": {"readonly": {"enabled": True}, "uploadpurging": {"enabled": False}},
        },
        "http": {
            "addr": f"127.0.0.1:{port}",
            "tls": {"certificate": str(sim.pki.server_cert), "key": str(sim.pki.server_key)},
        },
    }
    path = workdir / "registry.yml"
    path.write_text(yaml.safe_dump(config))
    proc = start_process("bundle-registry", [REGISTRY_BINARY, "serve", str(path)], workdir / "registry.log")
    try:

        def ready() -> bool:
            try:
                return (
                    httpx.get(f"https://127.0.0.1:{port}/v2/", verify=sim.ssl_context(), timeout=2).status_code == 200
                )
            except httpx.HTTPError:
                return False

        proc.wait_ready(ready)
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120, check=False)


def sha256sum_check(bundle: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"],
        cwd=bundle,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def mirrors_with(sim: UpstreamSimulator, **overrides: str) -> dict[str, Any]:
    """sim.mirrors() with the url of some hosts replaced: `dl_k8s_io="https://…"` for dl.k8s.io."""
    mirrors = sim.mirrors()
    for host, url in overrides.items():
        mirrors[host.replace("_", ".")] = {**mirrors[host.replace("_", ".")], "url": url}
    return mirrors


def plan_json(plan: Plan) -> str:
    return json.dumps(plan.model_dump(mode="json"))


# Runs `kubeplay ARGS…` with the planner replaced by the plan in argv[1] (the catalog is tested on its own).
PLAN_DRIVER = """
import sys
import kubeplay.assemble.pipeline as pipeline
from kubeplay.catalog.model import Plan
plan = Plan.model_validate_json(open(sys.argv[1]).read())
pipeline.cached_plan = lambda spec, tree, identity, state: plan
sys.argv = ["kubeplay", *sys.argv[2:]]
from kubeplay.cli.app import main
main()
"""


def kubeplay_with_plan(
    plan: Plan, workdir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """The real CLI (`kubeplay ARGS…`) building `plan` (written to workdir/plan.json), stdout/stderr piped."""
    plan_file = workdir / "plan.json"
    plan_file.write_text(plan_json(plan))
    return subprocess.Popen(
        [sys.executable, "-c", PLAN_DRIVER, str(plan_file), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


# Runs `kubeplay` on a prepared plan (argv[1]) and records its own peak RSS (VmHWM) in
# $KUBEPLAY_PEAK_RSS_FILE; shared by the large-layer test and bench/images.py.
PEAK_RSS_DRIVER = """
import atexit, os, sys
import kubeplay.assemble.pipeline as pipeline

def _peak() -> None:  # VmHWM: this process's own peak RSS (ru_maxrss would include the parent's pre-exec pages)
    hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]
    if os.environ.get("KUBEPLAY_PEAK_RSS_FILE"):
        open(os.environ["KUBEPLAY_PEAK_RSS_FILE"], "w").write(hwm)

atexit.register(_peak)
from kubeplay.catalog.model import Plan
plan = Plan.model_validate_json(open(sys.argv[1]).read())
pipeline.cached_plan = lambda spec, tree, identity, state: plan
sys.argv = ["kubeplay", *sys.argv[2:]]
from kubeplay.cli.app import main
main()
"""
