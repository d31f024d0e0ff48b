"""`kubeplay uninstall`: undo exactly what install recorded (units, configs, hosts lines, CA trust, repo
entries, tools), in reverse, and nothing else. Packages install added are kept unless asked to purge.

install.sh keeps its own record: the Python packages it installed from the bundle before kubeplay could
run (<state>/bootstrap/installed, written by POSIX sh: `family apt|rpm`, `created DIR`, `package NAME`
lines). Uninstall removes that directory, and with --purge-packages exactly those packages, last (kubeplay
itself runs on that Python)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kubeplay.bootstrap.hosts import apply_block
from kubeplay.bootstrap.paths import HostPaths
from kubeplay.bootstrap.record import InstallRecord, Item
from kubeplay.bootstrap.services import ChildService, stop_stale

BOOTSTRAP_DIR = "bootstrap"


@dataclass
class BootstrapRecord:
    """What install.sh installed to bring up Python: the package family, packages, and directories it made."""

    family: str = ""
    packages: list[str] = field(default_factory=list)
    created: list[Path] = field(default_factory=list)


def read_bootstrap(state: Path) -> BootstrapRecord | None:
    """install.sh's record under `state`, or None when install.sh installed nothing here."""
    path = state / BOOTSTRAP_DIR / "installed"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    rec = BootstrapRecord()
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "family":
            rec.family = value
        elif key == "package" and value:
            rec.packages.append(value)
        elif key == "created" and value:
            rec.created.append(Path(value))
    return rec


def _quiet(argv: list[str], timeout: float = 300) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def uninstall(
    paths: HostPaths,
    systemd: bool,
    purge_packages: bool = False,
    note: Callable[[str], None] = lambda _m: None,
) -> list[str]:
    """Remove what the install record lists; return one line per thing removed."""
    record = InstallRecord.load(paths.record)
    boot = read_bootstrap(paths.state)
    done: list[str] = []
    if not record.items and boot is None:
        return done
    owned_trees = {paths.etc, paths.state, paths.logs, paths.served}

    # Services first, so nothing holds files that are about to go.
    for item in record.of_kind("unit"):
        if systemd:
            _quiet(["systemctl", "disable", "--now", item.target], timeout=120)
        done.append(f"stopped and disabled {item.target}")
    for conf, pid in ((paths.registry_conf, "registry.pid"), (paths.nginx_conf, "nginx-fg.pid")):
        stop_stale(ChildService("", [], str(conf), paths.state / pid, paths.logs / "unused"))

    for item in record.of_kind("marker_block"):
        if apply_block(Path(item.target), []):
            done.append(f"removed kubeplay lines from {item.target}")

    chrony_touched = any("chrony" in i.target for i in record.items if i.kind in ("file", "dropin", "marker_block"))
    for item in reversed(record.items):
        if item.kind in ("file", "dropin", "unit"):
            target = Path(item.target) if item.kind != "unit" else paths.units / item.target
            if target.exists() or target.is_symlink():
                target.unlink()
                done.append(f"removed {target}")

    for item in record.of_kind("trust"):
        _quiet(item.detail.split(), timeout=120)
        done.append(f"CA no longer trusted ({item.detail})")

    if systemd:
        _quiet(["systemctl", "daemon-reload"], timeout=120)
        if chrony_touched:
            for unit in ("chrony.service", "chronyd.service"):
                if _quiet(["systemctl", "try-restart", unit], timeout=120):
                    break

    pkgs = record.of_kind("package")
    if pkgs and purge_packages:
        _purge(pkgs)
        done.append("purged packages install added: " + ", ".join(i.target for i in pkgs))
    elif pkgs:
        note("kept packages install added (use --purge-packages to remove): " + ", ".join(i.target for i in pkgs))
    if boot is not None and boot.packages and not purge_packages:
        note("kept the Python install.sh installed (use --purge-packages to remove): " + ", ".join(boot.packages))
    if boot is not None:
        shutil.rmtree(paths.state / BOOTSTRAP_DIR, ignore_errors=True)
        done.append(f"removed {paths.state / BOOTSTRAP_DIR}")
        # install.sh made the state directory: it goes with the rest, as when install made it
        dirs_made = {Path(i.target) for i in record.of_kind("dir")}
        if paths.state in boot.created and paths.state not in dirs_made:
            record.items.append(Item("dir", str(paths.state)))

    dirs = sorted((Path(i.target) for i in record.of_kind("dir")), key=lambda p: len(p.parts), reverse=True)
    for target in dirs:
        if target in owned_trees and target != paths.state and target.exists():
            shutil.rmtree(target, ignore_errors=True)
            done.append(f"removed {target}")
    _prune_empty([d for d in dirs if d != paths.state and not d.is_relative_to(paths.state)])
    # The state directory (ledger, record) goes last, so an interrupted uninstall can be run again.
    if paths.state in dirs and paths.state.exists():
        shutil.rmtree(paths.state, ignore_errors=True)
        done.append(f"removed {paths.state}")
        _prune_empty(dirs)
    else:
        paths.record.unlink(missing_ok=True)
    if boot is not None and boot.packages and purge_packages:
        # Last: kubeplay runs on this Python. dpkg/rpm remove exactly these, and refuse if anything else needs one.
        if _remove_exactly(boot):
            done.append("purged the Python install.sh installed: " + ", ".join(boot.packages))
        else:
            note(
                "could not remove the Python install.sh installed (something else needs it): "
                + ", ".join(boot.packages)
            )
    return done


def _remove_exactly(boot: BootstrapRecord) -> bool:
    if boot.family == "apt":
        return _quiet(["dpkg", "--purge", *boot.packages], timeout=900)
    return _quiet(["rpm", "-e", *boot.packages], timeout=900)


def _prune_empty(dirs: list[Path]) -> None:
    """Remove recorded directories that are now empty, deepest first; a non-empty one is someone else's too."""
    for d in dirs:
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()


def _purge(pkgs: list[Item]) -> None:
    apt = [i.target for i in pkgs if i.detail == "apt"]
    rpm = [i.target for i in pkgs if i.detail == "rpm"]
    if apt:
        _quiet(["apt-get", "purge", "-y", "-q", *apt], timeout=900)
    if rpm:
        _quiet(["dnf", "-y", "remove", *rpm], timeout=900)
