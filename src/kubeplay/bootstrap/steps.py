"""The install steps in order, run by kubeplay.steps against install's ledger.

Each step has an inputs function (a hash; none = run every time) and a run function. A step whose hash
matches the ledger is skipped, so a re-run after `kill -9` resumes at the step that was interrupted,
and a changed registry domain or IP re-runs exactly the steps that depend on it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from kubeplay import settings
from kubeplay.bootstrap import certs, packages
from kubeplay.bootstrap.bundleinfo import BundleFacts, probe_file
from kubeplay.bootstrap.chrony import find_layout, render_chrony_conf, render_chrony_dropin, upstream_servers
from kubeplay.bootstrap.context import InstallContext, run_command
from kubeplay.bootstrap.health import HealthTarget, wait_healthy
from kubeplay.bootstrap.hosts import apply_block, hosts_lines, other_entries_for
from kubeplay.bootstrap.merge import REPO_KEY_HOME, add_bundle
from kubeplay.bootstrap.nginx import (
    choose_worker_user,
    ipv6_available,
    nginx_binary,
    render_nginx_conf,
    render_nginx_unit,
    settings_for,
)
from kubeplay.bootstrap.paths import UNIT_NGINX, UNIT_REGISTRY, HostPaths
from kubeplay.bootstrap.preflight import check_host
from kubeplay.bootstrap.record import ensure_dir, write_owned
from kubeplay.bootstrap.registry import registry_binary, render_registry_config, render_registry_unit, tagged_images
from kubeplay.bootstrap.served import served_facts, served_versions
from kubeplay.bootstrap.services import ChildService, ForegroundServices, install_unit, start_units
from kubeplay.config.install import EffectiveConfig
from kubeplay.errors import BadInput, StepFailed
from kubeplay.state import Ledger, atomic_write, input_hash
from kubeplay.steps import Selection, Step, StepResult, StepRunner

# ---- packages and tools


def os_packages_inputs(ctx: InstallContext) -> str | None:
    # No repo for this OS: preflight, which runs before this step, says so along with every other problem.
    if ctx.bundle.repo_for(ctx.os_info.id, *ctx.os_info.release_names) is None:
        return None
    return packages.os_packages_inputs(ctx)


def run_os_packages(ctx: InstallContext) -> str:
    new = packages.setup_os_packages(ctx)
    return f"installed {', '.join(new)}" if new else "packages already present"


def run_tools(ctx: InstallContext) -> str:
    done = packages.install_tools(ctx)
    return f"{', '.join(done)} in {ctx.paths.bin}" if done else "no kubectl/helm in the bundle for this arch"


# ---- certificates and trust


def certs_inputs(ctx: InstallContext) -> str:
    return input_hash({"domain": ctx.cfg.registry_domain, "ips": ctx.ips, "generate": ctx.cfg.generate_domain_crt})


def run_certs(ctx: InstallContext) -> str:
    p = ctx.paths
    ensure_dir(ctx.record, p.certs)
    if not ctx.cfg.generate_domain_crt:
        problems = certs.check_user_certs(p.server_cert, p.server_key, p.ca_cert, ctx.cfg.registry_domain)
        if problems:
            raise BadInput("default.generate_domain_crt is false, but: " + "; ".join(problems))
        return "using the operator's certificates"
    for f in (p.ca_cert, p.ca_key, p.server_cert, p.server_key):
        ctx.record.add("file", f)
    ca, made = certs.load_or_make_ca(p.ca_cert, p.ca_key)
    issued = certs.ensure_server_cert(ca, p.server_cert, p.server_key, ctx.cfg.registry_domain, ctx.ips)
    what = ("new CA; " if made else "") + ("server certificate issued" if issued else "server certificate current")
    return f"{what} for {ctx.cfg.registry_domain}, {', '.join(ctx.ips)}"


def trust_inputs(ctx: InstallContext) -> str:
    return input_hash(certs.fingerprint(ctx.paths.ca_cert.read_bytes()))


def run_trust(ctx: InstallContext) -> str:
    data = ctx.paths.ca_cert.read_bytes()
    if ctx.os_info.family == "rpm":
        target, cmd = ctx.paths.ca_trust_rhel, ["update-ca-trust", "extract"]
    else:
        target, cmd = ctx.paths.ca_trust_debian, ["update-ca-certificates"]
    ctx.record.add("trust", target, " ".join(cmd))
    write_owned(ctx.record, target, data)
    run_command(cmd, timeout=120)
    return f"CA trusted system-wide ({target})"


# ---- hosts


def hosts_inputs(ctx: InstallContext) -> str:
    return input_hash(hosts_lines(ctx.cfg.registry_ip, ctx.cfg.registry_domain))


def run_hosts(ctx: InstallContext) -> str:
    path = ctx.paths.hosts_file
    ctx.record.add("marker_block", path)
    changed = apply_block(path, hosts_lines(ctx.cfg.registry_ip, ctx.cfg.registry_domain))
    others = other_entries_for(path.read_text(), ctx.cfg.registry_domain)
    if others:
        ctx.out.warn(f"{path} also names {ctx.cfg.registry_domain} outside kubeplay's block: {others[0]!r}")
    return f"{ctx.cfg.registry_domain} -> {ctx.cfg.registry_ip}" + ("" if changed else " (unchanged)")


# ---- the served set


def serve_inputs(ctx: InstallContext) -> str:
    return input_hash({"bundle": ctx.identity, "served": ctx.paths.served})


def run_serve(ctx: InstallContext) -> str:
    ensure_dir(ctx.record, ctx.paths.served)
    ctx.record.add("dir", ctx.paths.etc / REPO_KEY_HOME)
    with ctx.out.byte_progress("adding the bundle to what this node serves") as progress:
        done = add_bundle(ctx.bundle.root, ctx.paths, progress, settings.from_environ().verified_sums)
    (ctx.paths.served / "registry").mkdir(parents=True, exist_ok=True)
    versions = ", ".join(v.kube_version for v in served_versions(ctx.paths))
    if done.already:
        return f"Kubernetes {done.kube_version} already served (serving {versions})"
    how = f"{done.linked} linked, {done.copied} copied" + (
        f", {done.rebuilt} rebuilt from patches" if done.rebuilt else ""
    )
    return f"Kubernetes {done.kube_version} added: {done.added} new file(s) ({how}); serving {versions}"


# ---- registry and nginx


def _registry_files(ctx: InstallContext) -> tuple[str, str]:
    conf = render_registry_config((ctx.paths.served / "registry").resolve(), ctx.cfg.registry_push_port)
    return conf, render_registry_unit(packages.registry_source(ctx)[0], ctx.paths.registry_conf)


def registry_inputs(ctx: InstallContext) -> str:
    archive = packages.bundled_registry_archive(ctx)
    return input_hash([*_registry_files(ctx), str(archive) if archive else None])


def run_registry(ctx: InstallContext) -> str:
    binary, archive = packages.registry_source(ctx)
    if archive is not None:
        packages.install_registry_binary(ctx, archive)
    elif registry_binary() is None:
        raise StepFailed(
            "the distribution registry binary is not installed and the bundle carries none",
            hint="re-run with --from os-packages, or add `registry_binary:` to bundle.yaml and rebuild",
        )
    conf, unit = _registry_files(ctx)
    write_owned(ctx.record, ctx.paths.registry_conf, conf.encode())
    if not ctx.no_systemd:
        install_unit(ctx.record, ctx.paths.units, UNIT_REGISTRY, unit)
    origin = f" ({binary} from {archive.name})" if archive is not None else ""
    return f"{ctx.paths.registry_conf}; serving {ctx.paths.served / 'registry'} on 127.0.0.1:{ctx.cfg.registry_push_port}{origin}"


def _nginx_files(ctx: InstallContext) -> tuple[str, str]:
    served = [ctx.paths.served / "files", ctx.paths.served / "repos", ctx.paths.served / "registry"]
    s = settings_for(
        ctx.paths,
        served_dir=ctx.paths.served.resolve(),
        http_port=ctx.cfg.nginx_http_port,
        https_port=ctx.cfg.registry_https_port,
        push_port=ctx.cfg.registry_push_port,
        registry_domain=ctx.cfg.registry_domain,
        registry_ip=ctx.cfg.registry_ip,
        worker_user=choose_worker_user(served, ctx.paths.root / "etc/passwd"),
        ipv6=ipv6_available(),
    )
    unit = render_nginx_unit(nginx_binary() or "/usr/sbin/nginx", ctx.paths.nginx_conf, s.pid_file)
    return render_nginx_conf(s), unit


def nginx_inputs(ctx: InstallContext) -> str:
    return input_hash([*_nginx_files(ctx), certs.fingerprint(ctx.paths.server_cert.read_bytes())])


def run_nginx(ctx: InstallContext) -> str:
    nginx = nginx_binary()
    if nginx is None:
        raise StepFailed("nginx is not installed", hint="re-run with --from os-packages")
    conf, unit = _nginx_files(ctx)
    for d in (ctx.paths.state / "nginx", ctx.paths.logs):
        ensure_dir(ctx.record, d)
    write_owned(ctx.record, ctx.paths.nginx_conf, conf.encode())
    run_command([nginx, "-e", "stderr", "-t", "-q", "-c", ctx.paths.nginx_conf], timeout=60, what="nginx -t")
    if not ctx.no_systemd:
        install_unit(ctx.record, ctx.paths.units, UNIT_NGINX, unit)
    return f"{ctx.paths.nginx_conf}; HTTP :{ctx.cfg.nginx_http_port}, TLS :{ctx.cfg.registry_https_port}"


# ---- chrony


def _has_cap_sys_time() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return bool(int(line.split()[1], 16) & (1 << 25))
    return True


def _chrony_text(ctx: InstallContext) -> str:
    own = {ctx.cfg.internal_ip, ctx.cfg.registry_ip}
    return render_chrony_conf(ctx.cfg.ntp_allow, upstream_servers(ctx.cfg.ntp_servers, own))


def chrony_inputs(ctx: InstallContext) -> str:
    return input_hash([_chrony_text(ctx), _has_cap_sys_time()])


def run_chrony(ctx: InstallContext) -> str:
    layout = find_layout(ctx.paths.chrony_main_candidates, ctx.paths.root)
    if layout is None:
        raise StepFailed("chrony is not installed (no chrony.conf)", hint="re-run with --from os-packages")
    fragment = layout.fragment_path(ctx.paths.chrony_conf)
    write_owned(ctx.record, fragment, _chrony_text(ctx).encode())
    if layout.confdir is None:
        ctx.record.add("marker_block", layout.main_conf)
        apply_block(layout.main_conf, [f"include {fragment}"])
    if ctx.no_systemd:
        return f"{fragment} (chronyd not restarted: --no-systemd)"
    unit = next(
        (
            u
            for u in ("chrony.service", "chronyd.service")
            if (ctx.paths.root / "lib/systemd/system" / u).exists()
            or (ctx.paths.root / "usr/lib/systemd/system" / u).exists()
        ),
        "chrony.service",
    )
    note = ""
    if not _has_cap_sys_time():
        # In a container chronyd cannot set the clock; -x keeps it serving time anyway.
        var = "$DAEMON_OPTS" if unit == "chrony.service" else "$OPTIONS"
        dropin = ctx.paths.units / f"{unit}.d" / "kubeplay.conf"
        ctx.record.add("dropin", dropin)
        write_owned(ctx.record, dropin, render_chrony_dropin("/usr/sbin/chronyd", var).encode())
        note = ", -x (no CAP_SYS_TIME)"
    start_units([unit], restart={unit})
    return f"serving {', '.join(ctx.cfg.ntp_allow)} from {fragment}{note}"


# ---- services and health


_FOREGROUND = ForegroundServices()


def foreground() -> ForegroundServices:
    """The child processes started by a --no-systemd install (the CLI waits on them, then stops them)."""
    return _FOREGROUND


def run_services(ctx: InstallContext) -> str:
    if ctx.no_systemd:
        p = ctx.paths
        reg = packages.registry_source(ctx)[0]
        nginx = nginx_binary() or "nginx"
        _FOREGROUND.start(
            ChildService(
                "kubeplay-registry",
                [reg, "serve", str(p.registry_conf)],
                str(p.registry_conf),
                p.state / "registry.pid",
                p.logs / "registry.log",
            )
        )
        _FOREGROUND.start(
            ChildService(
                "kubeplay-nginx",
                [nginx, "-e", "stderr", "-c", str(p.nginx_conf), "-g", "daemon off;"],
                str(p.nginx_conf),
                p.state / "nginx-fg.pid",
                p.logs / "nginx.log",
            )
        )
        return "registry and nginx started in the foreground (--no-systemd)"
    ledger = Ledger(ctx.paths.state / "services.json")
    ctx.record.add("file", ledger.path)
    wanted = {UNIT_REGISTRY: registry_inputs(ctx), UNIT_NGINX: nginx_inputs(ctx)}
    restart = {u for u, h in wanted.items() if not ledger.is_done(f"service:{u}", h)}
    start_units([UNIT_REGISTRY, UNIT_NGINX], restart)
    for u, h in wanted.items():
        ledger.mark_done(f"service:{u}", h)
    return f"{UNIT_REGISTRY}, {UNIT_NGINX} active" + (f" (restarted {', '.join(sorted(restart))})" if restart else "")


def health_target(cfg: EffectiveConfig, paths: HostPaths, bundle: BundleFacts) -> HealthTarget:
    """What to probe: the registry by domain (connecting to registry_ip), one image, one file, the CA."""
    images = tagged_images(bundle.registry_dir)
    return HealthTarget(
        connect_ip=cfg.registry_ip,
        registry_domain=cfg.registry_domain,
        https_port=cfg.registry_https_port,
        http_port=cfg.nginx_http_port,
        ca_file=paths.ca_cert,
        image=images[0] if images else None,
        file=probe_file(bundle),
    )


def run_health(ctx: InstallContext) -> str:
    alive = _FOREGROUND.check_alive if ctx.no_systemd else None
    facts = served_facts(ctx.paths, ctx.identity)
    passed = wait_healthy(health_target(ctx.cfg, ctx.paths, facts), deadline_s=90, alive=alive)
    return "; ".join(passed)


STEPS: tuple[Step[InstallContext], ...] = (
    Step("preflight", "OS, arch, ports, disk, Python", check_host, check=True),
    Step("os-packages", "bundle OS repo and packages", run_os_packages, os_packages_inputs),
    Step("serve", "add the bundle to what this node serves", run_serve, serve_inputs),
    Step("tools", "kubectl and helm", run_tools, packages.tools_inputs),
    Step("certs", "CA and registry certificate", run_certs, certs_inputs),
    Step("trust", "CA trusted system-wide", run_trust, trust_inputs),
    Step("hosts", "/etc/hosts entry", run_hosts, hosts_inputs),
    Step("registry", "registry config and unit", run_registry, registry_inputs),
    Step("nginx", "nginx config and unit", run_nginx, nginx_inputs),
    Step("chrony", "time server for the cluster", run_chrony, chrony_inputs),
    Step("services", "start registry and nginx", run_services),
    Step("health", "health check", run_health),
)
STEP_NAMES = [s.name for s in STEPS]


def write_effective_config(ctx: InstallContext) -> None:
    ctx.record.add("file", ctx.paths.effective_config)
    body = "# What `kubeplay install` used: config.yaml with placeholders resolved. Not read back.\n"
    body += yaml.safe_dump(ctx.cfg.model_dump(mode="json"), sort_keys=False)
    atomic_write(ctx.paths.effective_config, body.encode(), mode=0o600)


def _open_state(ctx: InstallContext) -> None:
    # Called once preflight has passed: a refused install leaves no trace.
    ensure_dir(ctx.record, ctx.paths.state)
    ctx.record.add("file", ctx.paths.ledger)
    write_effective_config(ctx)


def run_install(
    ctx: InstallContext, selection: Selection | None = None, steps: tuple[Step[InstallContext], ...] = STEPS
) -> list[StepResult]:
    """Run the install steps that `selection` asks for and are not done; return what each did.

    Raises BadInput for an unknown step name or a refused preflight, StepFailed for a failed step.
    """
    runner = StepRunner("install", steps, ctx.out, Ledger(ctx.paths.ledger), on_start=lambda: _open_state(ctx))
    return runner.run(ctx, selection)
