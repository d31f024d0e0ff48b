"""Install steps that put software on the deploy node: the bundle's OS repo and packages, kubectl and helm,
and the distribution registry from the bundle's release archive where the OS repo has no package for it."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from kubeplay.bootstrap.bundleinfo import BundleFacts
from kubeplay.bootstrap.context import InstallContext, run_command
from kubeplay.bootstrap.osrepo import (
    APT_PACKAGES,
    RPM_PACKAGES,
    apt_env,
    apt_options,
    apt_package_names,
    choose_packages,
    distro_rpm_keys,
    find_key,
    key_is_armored,
    render_apt_source,
    render_yum_repo,
    rpm_package_names,
)
from kubeplay.bootstrap.record import write_owned
from kubeplay.bootstrap.registry import REGISTRY_PACKAGES, registry_binary
from kubeplay.bootstrap.served import served_facts
from kubeplay.bundle.manifest import REGISTRY_BINARY_FILE
from kubeplay.errors import BadInput, BundleError, StepFailed
from kubeplay.state import input_hash

DISTRO_UNITS = {
    "nginx-light": "nginx.service",
    "nginx": "nginx.service",
    "docker-registry": "docker-registry.service",
    "docker-distribution": "docker-distribution.service",
}
DPKG_LOCK = Path("/var/lib/dpkg/lock-frontend")
POLICY_RC_D = b"#!/bin/sh\n# kubeplay install: keep distro services from starting while packages install.\nexit 101\n"


def _content(ctx: InstallContext) -> BundleFacts:
    """Where this bundle's files are: in the served set once the serve step added it (a delta carries only
    what changed), else in the bundle directory."""
    try:
        return served_facts(ctx.paths, ctx.identity)
    except BadInput:
        return ctx.bundle


def _package_source(ctx: InstallContext) -> BundleFacts:
    """The repo the deploy node's own packages come from: the served union once there is one for this OS
    (its key stays the same across bundles; a delta's repo holds only new packages), else the bundle's."""
    try:
        served = served_facts(ctx.paths)
    except BadInput:
        return ctx.bundle
    return served if served.repo_for(ctx.os_info.id, *ctx.os_info.release_names) else ctx.bundle


def _repo(ctx: InstallContext) -> Any:
    repo = _package_source(ctx).repo_for(ctx.os_info.id, *ctx.os_info.release_names)
    if repo is None:
        raise BundleError(f"the bundle has no OS repo for {ctx.os_info.id} {ctx.os_info.release}")
    return repo


def os_packages_inputs(ctx: InstallContext) -> str:
    repo = _repo(ctx)
    release_files = sorted(str(p.stat().st_mtime_ns) + p.name for p in repo.path.glob("dists/*/Release"))
    return input_hash({"repo": str(repo.path), "release": release_files, "family": repo.family})


def installed_debs(names: list[str]) -> set[str]:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${Status}\n", *names],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return {line.split()[0] for line in proc.stdout.splitlines() if line.endswith("install ok installed")}


def installed_rpms(names: list[str]) -> set[str]:
    proc = subprocess.run(
        ["rpm", "-q", "--qf", "%{NAME}\n", *names], capture_output=True, text=True, timeout=60, check=False
    )
    return {line.strip() for line in proc.stdout.splitlines() if line.strip() in names}


def packages_needed(
    wanted: tuple[tuple[str, ...], ...], installed: set[str], available: set[str], registry_bundled: bool
) -> tuple[tuple[str, ...], ...]:
    """The alternatives still to install: not those already installed (whatever their origin), nor the
    registry package when the repo has none and the bundle carries the registry's release archive (EL)."""
    needed = tuple(alts for alts in wanted if not any(p in installed for p in alts))
    if registry_bundled and not (available & set(REGISTRY_PACKAGES)):
        needed = tuple(alts for alts in needed if not set(alts) & set(REGISTRY_PACKAGES))
    return needed


def setup_os_packages(ctx: InstallContext) -> list[str]:
    """Configure the bundle repo and install the deploy node's packages from it; return what was installed."""
    repo = _repo(ctx)
    key = find_key(repo, _package_source(ctx).root)
    data = key.read_bytes()
    if repo.family == "apt":
        keyring = ctx.paths.apt_keyring.with_suffix(".asc" if key_is_armored(data) else ".gpg")
        write_owned(ctx.record, keyring, data)
        write_owned(ctx.record, ctx.paths.apt_sources, render_apt_source(repo.path, keyring).encode())
        wanted, available = APT_PACKAGES, apt_package_names(repo.path, ctx.arch)
        installed = installed_debs([p for alts in wanted for p in alts])
    else:
        write_owned(ctx.record, ctx.paths.rpm_key, data)
        write_owned(
            ctx.record,
            ctx.paths.yum_repo,
            render_yum_repo(repo.path, ctx.paths.rpm_key, distro_rpm_keys(repo.path)).encode(),
        )
        wanted, available = RPM_PACKAGES, rpm_package_names(repo.path)
        installed = installed_rpms([p for alts in wanted for p in alts])
    # Whatever is installed already need not come from the bundle.
    needed = packages_needed(wanted, installed, available, bundled_registry_archive(ctx) is not None)
    chosen, missing = choose_packages(needed, available)
    if missing:
        raise BundleError(
            f"the bundle's {repo.distro} {repo.release} repo lacks: {', '.join(missing)}",
            hint="add them to `packages:` in bundle.yaml and rebuild"
            + (
                "; for the registry, `registry_binary:` bundles its release archive instead"
                if any("registry" in m or "distribution" in m for m in missing)
                else ""
            ),
        )
    if repo.family == "apt":
        return _apt_install(ctx, chosen)
    return _dnf_install(ctx, chosen)


def wait_for_dpkg_lock(lock: Path = DPKG_LOCK, deadline_s: float = 900) -> None:
    """Wait (bounded) while another process holds dpkg's lock, e.g. an apt-get left running by a killed install."""
    if not lock.exists():
        return
    end = time.monotonic() + deadline_s
    delay = 0.1
    while True:
        with lock.open("a") as fh:
            try:
                fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pass
            else:
                fcntl.lockf(fh, fcntl.LOCK_UN)
                return
        if time.monotonic() > end:
            raise StepFailed(
                f"dpkg is locked by another process for more than {deadline_s:.0f}s", hint="see `ps aux | grep apt`"
            )
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def _apt_install(ctx: InstallContext, new: list[str]) -> list[str]:
    env = apt_env()
    opts = apt_options(ctx.paths.apt_sources)
    policy = ctx.paths.policy_rc_d
    # An apt-get left running by a killed install finishes first (and still sees our policy-rc.d).
    wait_for_dpkg_lock()
    left = [i for i in ctx.record.of_kind("file") if i.target == str(policy)]
    if left:
        policy.unlink(missing_ok=True)
        ctx.record.remove(left[0])
    # A kill -9 during an earlier dpkg run leaves packages half-configured; finish that first.
    run_command(["dpkg", "--configure", "-a"], env=env, timeout=900, what="dpkg --configure -a")
    # Updating proves the bundle's signature checks out with the bundle key, even when nothing is missing.
    run_command(["apt-get", *opts, "update"], env=env, timeout=300, what="apt-get update (bundle repo)")
    new = [p for p in new if p not in installed_debs(new)]
    for p in new:
        ctx.record.add("package", p, "apt")
    if new:
        own_policy = not policy.exists()
        if own_policy:
            write_owned(ctx.record, policy, POLICY_RC_D, mode=0o755)
        try:
            run_command(
                ["apt-get", *opts, "install", "-y", "--no-install-recommends", *new],
                env=env,
                timeout=1800,
                what="apt-get install",
            )
        finally:
            if own_policy:
                policy.unlink(missing_ok=True)
                ctx.record.remove(next(i for i in ctx.record.items if i.target == str(policy)))
    disable_distro_units(ctx)
    return new


def disable_distro_units(ctx: InstallContext) -> None:
    """kubeplay runs its own nginx and registry units: the distro's (default site on :80, a registry
    with its own config on :5000) must neither run now nor come up at boot, for packages install added."""
    units = {DISTRO_UNITS[i.target] for i in ctx.record.of_kind("package") if i.target in DISTRO_UNITS}
    for unit in sorted(units):
        subprocess.run(
            ["systemctl", "disable", "--now", "--quiet", unit], capture_output=True, timeout=120, check=False
        )


def _dnf_install(ctx: InstallContext, new: list[str]) -> list[str]:
    for p in new:
        ctx.record.add("package", p, "rpm")
    if new:
        run_command(
            ["dnf", "-y", "--disablerepo=*", "--enablerepo=kubeplay", "install", *new], timeout=1800, what="dnf install"
        )
    disable_distro_units(ctx)
    return new


def _tool_sources(ctx: InstallContext) -> dict[str, Path]:
    files = _content(ctx).root / "files"
    found: dict[str, Path] = {}
    kubectl = sorted(p for p in files.glob(f"**/linux/{ctx.arch}/kubectl") if p.is_file())
    if kubectl:
        found["kubectl"] = kubectl[-1]
    helm = sorted(p for p in files.glob(f"**/helm-*-linux-{ctx.arch}.tar.gz") if p.is_file())
    if helm:
        found["helm"] = helm[-1]
    return found


def tools_inputs(ctx: InstallContext) -> str:
    return input_hash({k: [str(v), v.stat().st_size] for k, v in _tool_sources(ctx).items()})


def archive_member(tarball: Path, name: str) -> bytes:
    """The bytes of regular file `name` in a .tar.gz release archive (a verified bundle file)."""
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            member = tar.getmember(name)
            fh = tar.extractfile(member) if member.isreg() else None
            if fh is None:
                raise StepFailed(f"{tarball}: {name} is not a regular file")
            return fh.read()
    except KeyError:
        raise StepFailed(f"{tarball}: no member {name!r}", hint="check registry_binary.member in bundle.yaml") from None
    except (tarfile.TarError, OSError) as exc:
        raise StepFailed(f"{tarball}: unreadable archive: {exc}", hint="run `kubeplay verify` on the bundle") from exc


def _helm_binary(tarball: Path, arch: str) -> bytes:
    return archive_member(tarball, f"linux-{arch}/helm")


def bundled_registry_archive(ctx: InstallContext) -> Path | None:
    """The bundle's distribution registry release archive for this node's arch (bundle.yaml registry_binary)."""
    for record in ctx.bundle.manifest.get("files", []):
        if record.get("name") == REGISTRY_BINARY_FILE and record.get("arch") == ctx.arch and "path" in record:
            return _content(ctx).root / str(record["path"])
    return None


def registry_source(ctx: InstallContext) -> tuple[str, Path | None]:
    """(registry binary the unit runs, bundle archive to install it from first, or None): an OS package's
    binary where one is installed, else kubeplay's own from the bundle's release archive. With neither,
    the Debian package's path and None (the registry step then refuses)."""
    installed = registry_binary()
    owned = ctx.paths.bin / "registry"
    archive = bundled_registry_archive(ctx)
    if installed is not None and (archive is None or Path(installed) != owned):
        return installed, None
    if archive is not None:
        return str(owned), archive
    return "/usr/bin/docker-registry", None


def install_registry_binary(ctx: InstallContext, archive: Path) -> Path:
    """Put the registry binary from the bundle's release archive on the deploy node (owned by kubeplay)."""
    spec = ctx.bundle.manifest.get("spec", {}).get("registry_binary") or {}
    dest = ctx.paths.bin / "registry"
    write_owned(ctx.record, dest, archive_member(archive, str(spec.get("member", "registry"))), mode=0o755)
    return dest


def install_tools(ctx: InstallContext) -> list[str]:
    """kubectl and helm from the bundle's files onto the administrator's PATH; never over a file not ours."""
    done: list[str] = []
    owned = {i.target for i in ctx.record.of_kind("file")}
    for name, src in _tool_sources(ctx).items():
        dest = ctx.paths.bin / name
        if dest.exists() and str(dest) not in owned:
            ctx.out.warn(f"{dest} exists and was not installed by kubeplay; leaving it")
            continue
        data = src.read_bytes() if name == "kubectl" else _helm_binary(src, ctx.arch)
        write_owned(ctx.record, dest, data, mode=0o755)
        done.append(name)
    return done


def which_or_fail(names: tuple[str, ...], what: str) -> str:
    for n in names:
        found = shutil.which(n) or (n if Path(n).is_file() else None)
        if found:
            return found
    raise StepFailed(f"{what} is not installed ({' or '.join(names)} not found)", hint="re-run with --from os-packages")
