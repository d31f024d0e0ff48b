"""The I/O side of the demo's proofs: run node_probe.py on every node, read the deploy node's logs and
the bundle on the host, and turn it all into CheckResults with kubeplay.lab.demo.checks."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from kubeplay.bootstrap.registry import manifest_children
from kubeplay.bundle.manifest import BundleManifest
from kubeplay.errors import StepFailed
from kubeplay.lab.demo import checks
from kubeplay.lab.demo.report import CheckResult
from kubeplay.lab.nodes import LabNode

PROBE_TIMEOUT = 900
NODE_CA = "/etc/kubeplay-node/rootCA.crt"  # where kubeplay node prep puts the bundle CA
ACCESS_LOG = "var/log/kubeplay/nginx-access.log"
DEPLOY_CA = "etc/kubeplay/certs/rootCA.crt"


@dataclass(frozen=True)
class Site:
    """Where the demo's air gap is: deploy node, cluster nodes, the bundle (host copy), names and ports."""

    deploy: LabNode
    nodes: list[LabNode]
    subnet: str
    bundle: Path  # the bundle directory on the host (same content as on the deploy node)
    manifest: BundleManifest
    base_dpkg_status: Path  # the lab rootfs before anything was installed
    domain: str
    http_port: int

    @property
    def http_base(self) -> str:
        return f"http://{self.deploy.ip}:{self.http_port}"


def run_probe(node: LabNode, cfg: dict[str, Any], timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """Run node_probe.py on `node` with `cfg`; return its JSON; StepFailed if it did not produce any."""
    script = resources.files("kubeplay.lab.demo").joinpath("node_probe.py").read_text(encoding="utf-8")
    result = node.run(["python3", "-", json.dumps(cfg)], timeout=timeout, input=script)
    try:
        data: dict[str, Any] = json.loads(result.stdout)
    except ValueError:
        raise StepFailed(
            f"evidence probe on {node.name} failed (exit {result.returncode})",
            hint=(result.stderr or result.stdout)[-800:],
        ) from None
    return data


def image_refs(site: Site) -> dict[str, str]:
    """{reference by registry domain: digest the bundle serves} for every tagged bundled image."""
    return {
        f"{site.domain}/{img.repository}:{img.tag}": img.digest for img in site.manifest.images if img.tag is not None
    }


def image_fetch_keys(site: Site, arch: str = "amd64") -> set[str]:
    """`blob:<digest>` for every manifest and blob a node needs to pull every image for `arch`."""
    storage = site.bundle / "registry"
    keys: set[str] = set()
    for img in site.manifest.images:
        keys.add("blob:" + img.digest)
        for platform in img.platforms:
            if platform.arch == arch:
                keys.add("blob:" + platform.digest)
                keys.update("blob:" + b for b in manifest_children(storage, platform.digest)[2])
    return keys


def repo_index(bundle: Path) -> dict[tuple[str, str], str]:
    index: dict[tuple[str, str], str] = {}
    for packages in sorted(bundle.glob("repos/apt/*/*/dists/*/*/binary-*/Packages")):
        index.update(checks.parse_packages_index(packages.read_text(encoding="utf-8")))
    return index


def repo_url(site: Site) -> str:
    repo = next((r for r in site.manifest.os_repos if r.family == "apt"), None)
    path = repo.path if repo else "repos/apt/debian/bookworm"
    return f"{site.http_base}/{path}"


def node_checks(
    site: Site, node: LabNode, index: dict[tuple[str, str], str], prepared: bool = True
) -> list[CheckResult]:
    """Every check for one cluster node, from fresh evidence gathered on it.

    Without node prep (`prepared` False: no kubespray release to deploy with) only what needs no prep is
    checked: routes, files by URL, and those fetches in the access log.
    """
    files = {f.path: f.sha256 for f in site.manifest.files}
    ev = run_probe(
        node,
        {
            "mode": "evidence",
            "deploy_ip": site.deploy.ip,
            "domain": site.domain,
            "files_base": site.http_base,
            "files": sorted(files),
            "chrony_wait": 90 if prepared else 0,
        },
    )
    log_text = (site.deploy.root / ACCESS_LOG).read_text(encoding="utf-8", errors="replace")
    if not prepared:
        fetched = checks.fetch_keys(checks.parse_access_log(log_text), node.ip)
        return [
            checks.check_files(node.name, files, ev["files"]),
            checks.check_routes(node.name, site.subnet, ev["routes"], tuple(ev["outside_lookup"])),
            checks.check_fetches(node.name, {"files": {"/" + p for p in files}}, fetched),
        ]
    refs = image_refs(site)
    pulled = run_probe(
        node,
        {"mode": "images", "domain": site.domain, "refs": sorted(refs), "platform": "linux/amd64", "ca_path": NODE_CA},
    )
    base = checks.parse_dpkg_status(site.base_dpkg_status.read_text(encoding="utf-8"))
    now = checks.parse_dpkg_status((node.root / "var/lib/dpkg/status").read_text(encoding="utf-8"))
    installed = checks.new_packages(base, now)
    ca_pem = (site.deploy.root / DEPLOY_CA).read_text(encoding="utf-8")
    install_rc, install_out = pulled.get("install", [1, "no answer"])
    errors = {
        ref: out.strip().splitlines()[-1] if out.strip() else f"exit {rc}"
        for ref, (rc, out) in pulled["pulls"].items()
        if rc
    }
    if install_rc:
        errors = {ref: f"containerd from the bundle repo: {install_out.strip()[-300:]}" for ref in refs}
    results = [
        checks.check_package_sources(
            node.name,
            repo_url=repo_url(site),
            policy=ev["apt_policy"],
            source_files=ev["apt_sources"],
            installed_new=installed,
            repo_index=index,
        ),
        checks.check_ca_trusted(node.name, ca_pem, ev["trust_bundle"], ev["tls_probe"]),
        checks.check_chrony(node.name, site.deploy.ip, ev["chrony_tracking"], ev["chrony_sources"]),
        checks.check_images(node.name, refs, pulled.get("listed", {}), errors),
        checks.check_files(node.name, files, ev["files"]),
        checks.check_routes(node.name, site.subnet, ev["routes"], tuple(ev["outside_lookup"])),
    ]
    log = checks.parse_access_log((site.deploy.root / ACCESS_LOG).read_text(encoding="utf-8", errors="replace"))
    expected = {
        "files": {"/" + p for p in files},
        "packages": {"deb:" + index[(n, v)] for n, v in installed.items() if (n, v) in index},
        "image manifests and blobs": image_fetch_keys(site),
    }
    results.append(checks.check_fetches(node.name, expected, checks.fetch_keys(log, node.ip)))
    return results


def deploy_node_checks(site: Site) -> list[CheckResult]:
    """Checks on the deploy node itself: its own routes, and who its nginx served."""
    ev = run_probe(site.deploy, {"mode": "evidence", "deploy_ip": site.deploy.ip, "domain": site.domain,
                                 "files_base": site.http_base, "files": [], "chrony_wait": 0})  # fmt: skip
    log = checks.parse_access_log((site.deploy.root / ACCESS_LOG).read_text(encoding="utf-8", errors="replace"))
    return [
        checks.check_routes(site.deploy.name, site.subnet, ev["routes"], tuple(ev["outside_lookup"])),
        checks.check_log_clients(site.deploy.name, site.subnet, log),
    ]


def run_checks(site: Site, prepared: bool = True) -> list[CheckResult]:
    """Every check on every cluster node (two nodes at a time), then the deploy node's own."""
    index = repo_index(site.bundle)
    with ThreadPoolExecutor(max_workers=2) as pool:
        per_node = list(pool.map(lambda n: node_checks(site, n, index, prepared), site.nodes))
    return [c for results in per_node for c in results] + deploy_node_checks(site)
