"""The step ledger: re-runs skip what is done, a changed domain re-runs what depends on it, --from forces;
uninstall removes exactly what was recorded. Runs the file-writing steps under a temp root."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubeplay.bootstrap import preflight
from kubeplay.bootstrap.bundleinfo import read_bundle
from kubeplay.bootstrap.hostinfo import parse_os_release
from kubeplay.bootstrap.steps import STEPS, run_install
from kubeplay.bootstrap.uninstall import uninstall
from kubeplay.errors import BadInput
from kubeplay.steps import Selection, StepResult

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bootstrap_fixture import DEBIAN_12, make_bundle, make_context

LISTENER = "import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)"
FILE_STEPS = ["certs", "hosts", "registry", "nginx"]
# The steps that write files only (no root, no packages, no services): run without preflight.
FILE_ONLY = tuple(s for s in STEPS if s.name in FILE_STEPS)
needs_nginx = pytest.mark.skipif(
    shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(), reason="nginx not installed"
)


def ran(results: list[StepResult]) -> list[str]:
    return [r.name for r in results if r.ran]


@needs_nginx
def test_rerun_skips_done_steps_and_domain_change_reruns_dependents(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    ctx = make_context(tmp_path, bundle)
    assert ran(run_install(ctx, steps=FILE_ONLY)) == FILE_STEPS  # type: ignore[arg-type]
    ca_before = ctx.paths.ca_cert.read_bytes()  # type: ignore[attr-defined]
    assert ran(run_install(make_context(tmp_path, bundle), steps=FILE_ONLY)) == []  # type: ignore[arg-type]

    changed = make_context(tmp_path, bundle, domain="registry.site.example")
    assert ran(run_install(changed, steps=FILE_ONLY)) == ["certs", "hosts", "nginx"]  # type: ignore[arg-type]
    hosts = changed.paths.hosts_file.read_text()  # type: ignore[attr-defined]
    assert "127.0.0.1 registry.site.example" in hosts and "kube.registry.local" not in hosts
    assert changed.paths.ca_cert.read_bytes() == ca_before  # type: ignore[attr-defined]
    assert "server_name registry.site.example" in changed.paths.nginx_conf.read_text()  # type: ignore[attr-defined]

    forced = make_context(tmp_path, bundle, domain="registry.site.example")
    assert ran(run_install(forced, Selection(from_step="registry"), steps=FILE_ONLY)) == ["registry", "nginx"]  # type: ignore[arg-type]


def test_unknown_from_step_is_bad_input(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, make_bundle(tmp_path))
    with pytest.raises(BadInput) as info:
        run_install(ctx, Selection(from_step="nginxx"))  # type: ignore[arg-type]
    assert str(info.value) == "--from nginxx: no such install step"
    assert info.value.hint and info.value.hint.startswith("install steps: preflight, os-packages, serve, tools, certs")
    assert not ctx.paths.state.exists()  # type: ignore[attr-defined]


@needs_nginx
def test_uninstall_removes_what_install_wrote_and_nothing_else(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    ctx = make_context(tmp_path, bundle)
    root = ctx.paths.root  # type: ignore[attr-defined]
    (root / "etc/kubeplay-unrelated.conf").write_text("keep me\n")
    before_hosts = ctx.paths.hosts_file.read_text()  # type: ignore[attr-defined]
    run_install(ctx, steps=FILE_ONLY)  # type: ignore[arg-type]
    assert ctx.paths.nginx_conf.exists() and ctx.paths.server_key.exists()  # type: ignore[attr-defined]
    done = uninstall(ctx.paths, systemd=False)  # type: ignore[attr-defined]
    assert any("kubeplay lines" in line for line in done)
    assert ctx.paths.hosts_file.read_text() == before_hosts  # type: ignore[attr-defined]
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert left == ["etc", "etc/hosts", "etc/kubeplay-unrelated.conf"]
    assert bundle.exists() and (bundle / "kubeplay.json").exists(), "the bundle itself is not install's to remove"
    assert uninstall(ctx.paths, systemd=False) == [], "a second uninstall finds nothing to do"  # type: ignore[attr-defined]


def test_preflight_names_port_and_process(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        port = int(holder.stdout.readline())
        problems = preflight.check_ports({port: "the registry (push, loopback)"}, own_markers=["/etc/kubeplay/"])
        mine = preflight.check_ports({port: "x"}, own_markers=[f"{LISTENER[:20]}"])
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert len(problems) == 1
    line = problems[0].line()
    assert f"port {port} is in use by python" in line
    assert f"(pid {holder.pid}: " in line
    assert f"127.0.0.1:{port}" in line and "kubeplay needs it for the registry" in line
    assert mine == [], "a port held by kubeplay's own service (a re-run) is not a problem"


def test_preflight_refuses_wrong_arch_and_distro(tmp_path: Path) -> None:
    bundle = read_bundle(make_bundle(tmp_path, arches=("arm64",)))
    problems = preflight.check_os(parse_os_release(DEBIAN_12), "amd64", bundle)
    assert [p.check for p in problems] == ["arch"]
    assert "this node is amd64; the bundle was built for arm64" in problems[0].message
    jammy = parse_os_release('ID=ubuntu\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\n')
    problems = preflight.check_os(jammy, "arm64", bundle)
    assert [p.check for p in problems] == ["os"]
    assert "no OS package repo for this node's ubuntu jammy (it has: debian 12)" in problems[0].message


def test_preflight_lists_every_problem_at_once(tmp_path: Path) -> None:
    problems = [
        *preflight.check_privileges(is_root=False, systemd=False, no_systemd=False),
        *preflight.check_python((3, 9)),
        *preflight.check_disk(tmp_path, minimum=1 << 62),
    ]
    assert [p.check for p in problems] == ["user", "systemd", "python", "disk"]
    assert "--no-systemd" in problems[1].hint


@needs_nginx
def test_status_reports_recorded_steps_and_certificate(tmp_path: Path) -> None:
    from kubeplay.bootstrap.status import collect_status

    bundle = make_bundle(tmp_path)
    ctx = make_context(tmp_path, bundle)
    run_install(ctx, steps=FILE_ONLY)  # type: ignore[arg-type]
    report = collect_status(ctx.paths, bundle, probe=False)  # type: ignore[attr-defined]
    done = [name for name, when in report["steps"].items() if when]
    assert done == FILE_STEPS
    assert report["registry"] == "https://kube.registry.local:8443"
    assert report["files"] == "http://127.0.0.1:8080"
    assert report["certificate_expires"] > "2030"


def test_refused_preflight_writes_nothing(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, make_bundle(tmp_path, arches=("arm64",)))
    with pytest.raises(BadInput) as info:
        run_install(ctx)  # type: ignore[arg-type]
    assert "this node is" in str(info.value) or "preflight found" in str(info.value)
    assert not ctx.paths.state.exists(), "a refused install leaves no state behind"  # type: ignore[attr-defined]


def test_refused_preflight_lists_a_distro_the_bundle_lacks(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, make_bundle(tmp_path))
    ctx.os_info = parse_os_release('ID=ubuntu\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\n')  # type: ignore[attr-defined]
    with pytest.raises(BadInput) as info:
        run_install(ctx)  # type: ignore[arg-type]
    assert str(info.value).startswith("preflight found")
    assert "no OS package repo for this node's ubuntu jammy" in str(info.value)
    assert not ctx.paths.state.exists()  # type: ignore[attr-defined]


def test_el_repo_without_a_registry_package_relies_on_the_bundled_release() -> None:
    from kubeplay.bootstrap.osrepo import RPM_PACKAGES, choose_packages
    from kubeplay.bootstrap.packages import packages_needed

    el_repo = {"nginx", "chrony", "ca-certificates", "curl", "gnupg2"}  # BaseOS + AppStream: no docker-distribution
    needed = packages_needed(RPM_PACKAGES, set(), el_repo, registry_bundled=True)
    assert choose_packages(needed, el_repo) == (["nginx", "chrony", "ca-certificates", "curl", "gnupg2"], [])
    # Without the release archive the missing package is named, so the build can be fixed.
    needed = packages_needed(RPM_PACKAGES, set(), el_repo, registry_bundled=False)
    assert choose_packages(needed, el_repo)[1] == ["docker-distribution | distribution"]
    # A repo that has the package keeps using it; what is installed already is never reinstalled.
    fedora = el_repo | {"distribution"}
    assert ("docker-distribution", "distribution") in packages_needed(RPM_PACKAGES, set(), fedora, True)
    assert ("nginx",) not in packages_needed(RPM_PACKAGES, {"nginx"}, fedora, True)
