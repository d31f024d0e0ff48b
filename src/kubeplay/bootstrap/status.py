"""`kubeplay status`: the ledger, the units, the certificate, and one probe as a node would make it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from kubeplay.bootstrap import certs
from kubeplay.bootstrap.bundleinfo import read_bundle
from kubeplay.bootstrap.health import check_once
from kubeplay.bootstrap.hostinfo import systemd_running
from kubeplay.bootstrap.paths import UNIT_NGINX, UNIT_REGISTRY, HostPaths
from kubeplay.bootstrap.served import served_versions
from kubeplay.bootstrap.services import is_active
from kubeplay.bootstrap.steps import STEP_NAMES, health_target
from kubeplay.config.install import EffectiveConfig
from kubeplay.errors import KubeplayError
from kubeplay.state import Ledger


def read_effective(paths: HostPaths) -> EffectiveConfig | None:
    if not paths.effective_config.exists():
        return None
    return EffectiveConfig.model_validate(yaml.safe_load(paths.effective_config.read_text(encoding="utf-8")))


def collect_status(paths: HostPaths, bundle_dir: Path | None, probe: bool) -> dict[str, Any]:
    """A JSON-able report: steps (name -> finished time or None), units, certificate expiry, health."""
    ledger = Ledger(paths.ledger)
    report: dict[str, Any] = {
        "steps": {
            n: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["finished"])) if e else None
            for n in STEP_NAMES
            for e in [ledger.steps.get(n)]
        }
    }
    report["versions"] = [
        {
            "kube_version": v.kube_version,
            "kubespray_version": v.kubespray_version,
            "identity": v.identity,
            "installed_at": v.installed_at,
            "delta_of": list(v.delta_of),
        }
        for v in served_versions(paths)
    ]
    if systemd_running():
        report["units"] = {u: ("active" if is_active(u) else "inactive") for u in (UNIT_REGISTRY, UNIT_NGINX)}
    if paths.server_cert.exists():
        report["certificate_expires"] = certs.expires(paths.server_cert.read_bytes()).date().isoformat()
    cfg = read_effective(paths)
    if cfg is None:
        return report
    report["registry"] = f"https://{cfg.registry_url}"
    report["files"] = cfg.offline_resources_url
    if probe:
        try:
            served = served_versions(paths)
            if bundle_dir is None and served:
                bundle = served[-1].facts()
            else:
                bundle = read_bundle((bundle_dir or _bundle_of(paths, cfg)).resolve())
            report["health"] = check_once(health_target(cfg, paths, bundle))
            report["healthy"] = True
        except (KubeplayError, httpx.HTTPError, RuntimeError, OSError) as exc:
            report["health"] = f"failing: {exc}"
            report["healthy"] = False
    return report


def _bundle_of(paths: HostPaths, cfg: EffectiveConfig) -> Path:
    """The bundle directory install served, from the registry config it rendered."""
    if paths.registry_conf.exists():
        for line in paths.registry_conf.read_text(encoding="utf-8").splitlines():
            if line.strip().startswith("rootdirectory:"):
                return Path(line.split(":", 1)[1].strip()).parent
    return Path(cfg.source).parent
