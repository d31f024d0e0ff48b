"""What every install step reads: the effective config, the bundle, the host, where to write, how to run."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kubeplay import settings
from kubeplay.bootstrap.bundleinfo import BundleFacts, read_bundle
from kubeplay.bootstrap.hostinfo import (
    OsInfo,
    address_prefixlen,
    detect_primary_address,
    machine_arch,
    read_os_release,
)
from kubeplay.bootstrap.paths import HostPaths
from kubeplay.bootstrap.record import InstallRecord
from kubeplay.bundle.inventory import identity_of
from kubeplay.bundle.manifest import MANIFEST_NAME
from kubeplay.bundle.trust import allowed_signers_for
from kubeplay.bundle.verify import verify_signature
from kubeplay.config.install import EffectiveConfig, load_install_config, resolve
from kubeplay.console import Output
from kubeplay.errors import StepFailed


@dataclass
class InstallContext:
    cfg: EffectiveConfig
    bundle: BundleFacts
    paths: HostPaths
    os_info: OsInfo
    arch: str
    no_systemd: bool
    record: InstallRecord
    out: Output

    @property
    def identity(self) -> str:
        """The bundle's identity (sha256 of its kubeplay.json)."""
        return identity_of((self.bundle.root / MANIFEST_NAME).read_bytes())

    @property
    def ips(self) -> list[str]:
        """Addresses the server certificate must name."""
        return list(dict.fromkeys([self.cfg.registry_ip, self.cfg.internal_ip]))


def run_command(
    args: Sequence[str | Path],
    timeout: float = 600,
    env: dict[str, str] | None = None,
    what: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command (argument list, timeout); raise StepFailed naming it and the tail of its stderr."""
    argv = [str(a) for a in args]
    label = what or " ".join(argv[:3])
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except FileNotFoundError:
        raise StepFailed(f"{label}: {argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise StepFailed(f"{label}: no result after {timeout:.0f}s", hint="run the same command again") from None
    if proc.returncode != 0:
        # apt prints the reason (unmet dependencies) on stdout and only the verdict on stderr: show both.
        lines = [*(proc.stdout or "").strip().splitlines(), *(proc.stderr or "").strip().splitlines()]
        tail = "\n".join(lines[-12:])
        raise StepFailed(f"{label} failed (exit {proc.returncode}): {tail}")
    return proc


def prepare_context(
    config_path: Path, bundle_dir: Path, paths: HostPaths, no_systemd: bool, out: Output
) -> InstallContext:
    """Load and resolve config.yaml, read the bundle and the host: everything steps need, nothing written."""
    cfg = load_install_config(config_path)
    detected = detect_primary_address() if cfg.compose.internal_ip is None else None
    ip = cfg.compose.internal_ip or (detected.ip if detected else None)
    prefix = detected.prefixlen if detected else (address_prefixlen(ip) if ip else None)
    effective = resolve(cfg, config_path, detected.ip if detected else None, prefix)
    signers = allowed_signers_for(config_path, cfg.compose.allowed_signers, settings.from_environ().allowed_signers)
    if signers is not None:  # install.sh checked it too; `kubeplay install` run by hand must not skip it
        signer = verify_signature(bundle_dir, signers)
        out.info(f"bundle signed by {signer.describe()}, allowed by {signers}")
    return InstallContext(
        cfg=effective,
        bundle=read_bundle(bundle_dir),
        paths=paths,
        os_info=read_os_release(paths.root),
        arch=machine_arch(),
        no_systemd=no_systemd,
        record=InstallRecord.load(paths.record),
        out=out,
    )
