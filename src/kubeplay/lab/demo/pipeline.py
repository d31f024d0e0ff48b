"""`run_demo`: the air-gapped rehearsal, end to end, on this machine.

simulated upstream -> `kubeplay build` -> `kubeplay pack` -> lab nodes -> archive into node0 -> `install.sh`
there -> `kubeplay deploy` from node0 to node1..N-1 (kubespray's own cluster.yml, until the first phase a
container cannot do) -> checks on every node -> report. Each phase is timed; the lab and the simulator
are gone at the end unless `keep`. The build directory under `workdir` stays: it is the cache that
makes the next run fast (files, images and Debian packages already verified are not fetched again).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from kubeplay import settings
from kubeplay.bundle.manifest import read_manifest
from kubeplay.console import Output, human_bytes
from kubeplay.errors import BadInput, BundleError, Interrupted, KubeplayError
from kubeplay.lab import record, rootfs
from kubeplay.lab.demo import inputs, probes
from kubeplay.lab.demo.commands import (
    SUBPROCESS_TIMEOUT,
    PhaseClock,
    events,
    kubeplay_argv,
    run_logged,
    stream_to_log,
)
from kubeplay.lab.demo.deploy_outcome import (
    CONTAINER_STEPS,
    DeployOutcome,
    explain_stop,
    is_transient,
    parse_deploy_output,
)
from kubeplay.lab.demo.report import Built, DemoReport, PhaseResult, render_report
from kubeplay.lab.nodes import Lab, unavailable_reason
from kubeplay.lab.upstream import UpstreamSimulator
from kubeplay.lab.upstream.release import default_kubespray_source, serve_release

LAB_NAME = "demo"
# A Debian 12 server as its installer leaves it (Priority required + important: iputils-ping among them,
# which kubespray's preinstall pings with but its system_packages installs only once network facts exist,
# i.e. never on a first run), plus zstd to unpack the archive on the deploy node.
NODE_ROOTFS = rootfs.RootfsSpec(variant="important", extra_packages=("zstd",))
BUNDLE_PARENT = "/opt/kubeplay"
CONFIG_IN_NODE = "/root/config.yaml"


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


class Demo:
    """One demo run; `run()` returns the report. Phases are methods, in order."""

    def __init__(self, workdir: Path, nodes: int, keep: bool, out: Output) -> None:
        self.workdir = workdir
        self.nodes = nodes
        self.keep = keep
        self.out = out
        self.logs = workdir / "logs"
        self.bundle = workdir / "bundle"
        self.report = DemoReport(workdir=str(workdir), nodes=nodes)
        self.clock = PhaseClock(self.report, out)
        self.lab: Lab | None = None
        self.archive: Path | None = None
        self.bundle_in_node = ""
        self.real_kubespray = False
        self.prepared = True  # node prep ran on the cluster nodes (it needs kubespray's cluster.yml)

    # -- build side ------------------------------------------------------------------------------------

    def build(self) -> None:
        source, self.real_kubespray = default_kubespray_source()
        upstream_dir = self.workdir / "upstream"
        shutil.rmtree(upstream_dir, ignore_errors=True)
        sim = UpstreamSimulator(upstream_dir, registry_auth="token")
        try:
            with self.clock.phase("simulated upstream") as note:
                sim.start()
                # Files for amd64 (the nodes' arch), images for amd64+arm64: the build cuts them to amd64.
                release = serve_release(sim, source, arches=["amd64"], image_arches=["amd64", "arm64"])
                version, pinned = release.version, release.pinned
                self.report.built.kubespray = f"{version} ({source.name})" + ("" if self.real_kubespray else " example")
                note.detail = (
                    f"kubespray {version} re-checksummed, {len(release.archive.files)} files, "
                    f"{len(release.images)} images (amd64+arm64) on loopback"
                    + (f"; {len(pinned)} digest-pinned skipped" if pinned else "")
                )
            spec_path = self.workdir / "bundle.yaml"
            creds = sim.credentials_file(self.workdir / "credentials.yaml")
            spec_data = inputs.bundle_spec(release.bundle_spec(sim.mirrors(), creds))
            spec_path.write_text(inputs.dump(spec_data), encoding="utf-8")
            with self.clock.phase("kubeplay build") as note:
                text = run_logged(
                    kubeplay_argv("build", str(spec_path), "-o", str(self.bundle)),
                    self.logs / "build.log",
                    "kubeplay build",
                    self.out,
                )
                fetched = next((e.get("fetched") for e in events(text, "built")), 0)
                note.detail = f"files, images (amd64), Debian 12 repo; fetched {_bytes(fetched)}"
        finally:
            sim.stop()
        self._check_install_files()
        self._record_built()
        with self.clock.phase("kubeplay pack") as note:
            text = run_logged(
                kubeplay_argv("pack", str(self.bundle), "-o", str(self.workdir / "packed")),
                self.logs / "pack.log",
                "kubeplay pack",
                self.out,
            )
            packed = events(text, "packed")[-1]
            self.archive = Path(str(packed["archive"]))
            self.report.built.archive = self.archive.name
            self.report.built.archive_bytes = int(str(packed["size"]))
            note.detail = f"{self.archive.name}, {_bytes(packed['size'])} of {_bytes(packed['content_size'])}"

    def _check_install_files(self) -> None:
        if not (self.bundle / "install.sh").is_file() or not list((self.bundle / "wheels").glob("requirements-*.txt")):
            raise BundleError(
                f"{self.bundle}: kubeplay build wrote no install.sh or wheels/",
                hint="the deploy node needs both; check KUBEPLAY_WHEELS is not 0 and see logs/build.log",
            )

    def _record_built(self) -> None:
        manifest = read_manifest(self.bundle)
        b: Built = self.report.built
        b.kube_version = manifest.kube_version
        b.files, b.files_bytes = manifest.totals.files, manifest.totals.files_size
        b.images, b.blobs, b.blobs_bytes = manifest.totals.images, manifest.totals.blobs, manifest.totals.blobs_size
        b.os_packages = sum(r.packages for r in manifest.os_repos)
        b.os_bytes = sum(r.size for r in manifest.os_repos)
        b.wheels = len(list((self.bundle / "wheels").glob("*.whl")))
        b.bundle_bytes = _dir_size(self.bundle) - _dir_size(self.bundle / ".kubeplay-build")

    # -- air-gapped side -------------------------------------------------------------------------------

    def lab_up(self) -> Lab:
        with self.clock.phase(f"lab up ({self.nodes} nodes)") as note:
            state = record.default_state_root() / LAB_NAME
            if record.state_path(state).exists():
                self.out.warn(f"a lab {LAB_NAME!r} from an earlier demo is still up; bringing it down first")
                Lab.load(LAB_NAME).down()
            # The node's own network namespace is its to configure (kubespray's ip_forward and bridge
            # settings): CAP_NET_ADMIN and a writable /proc/sys/net. kernel.* and vm.* stay the host's.
            self.lab = Lab.up(
                self.nodes,
                name=LAB_NAME,
                spec=NODE_ROOTFS,
                nspawn_args=("--capability=CAP_NET_ADMIN",),
                nspawn_env={"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"},
            )
            t = self.lab.timings
            note.detail = f"nspawn nodes booted; {', '.join(f'{k} {v:.0f}s' for k, v in t.items())}"
        return self.lab

    def install(self, lab: Lab) -> None:
        assert self.archive is not None
        deploy = lab.nodes[0]
        with self.clock.phase("copy + unpack on node0") as note:
            deploy.copy_in(self.archive, f"/root/{self.archive.name}")
            stem = self.archive.name.removesuffix(".tar.zst")
            unpack = f"mkdir -p {BUNDLE_PARENT} && tar --zstd -xf /root/{self.archive.name} -C {BUNDLE_PARENT}"
            deploy.run(["sh", "-c", unpack], timeout=600, check=True)
            self.bundle_in_node = f"{BUNDLE_PARENT}/{stem}"
            config = self.workdir / "config.yaml"
            config.write_text(inputs.dump(inputs.deploy_config(deploy, lab.nodes[1:])), encoding="utf-8")
            deploy.copy_in(config, CONFIG_IN_NODE)
            note.detail = f"{self.archive.name} -> node0:{self.bundle_in_node} (tar --zstd)"
        with self.clock.phase("install.sh on node0") as note:
            cmd = f"{self.bundle_in_node}/install.sh -c {CONFIG_IN_NODE} 2>&1"
            run_logged(deploy.ssh_argv(cmd), self.logs / "install.log", "install.sh (verify, venv, install)", self.out)
            note.detail = f"serving https://{inputs.DOMAIN} and http://{deploy.ip}:{inputs.HTTP_PORT} from node0"

    def deploy(self, lab: Lab) -> None:
        deploy = lab.nodes[0]
        if not (self.bundle / "kubespray" / "playbooks" / "cluster.yml").is_file():
            self.prepared = False
            self.report.phases.append(
                PhaseResult(
                    "kubeplay deploy",
                    0.0,
                    "skipped",
                    "../shared has no kubespray release; the example tree has no cluster.yml",
                )
            )
            return
        lab.give_ssh_access(deploy)
        with self.clock.phase(f"kubeplay deploy (node0 -> node1..node{self.nodes - 1})") as note:
            cmd = f"kubeplay --json-events deploy -c {CONFIG_IN_NODE} --bundle {self.bundle_in_node} 2>&1"
            outcome = self._run_deploy(deploy.ssh_argv(cmd), self.logs / "deploy.log")
            resumed = ""
            if outcome.stopped_at is not None and is_transient(outcome.message):
                resumed = f"; resumed once after: {outcome.message[:120]}"
                self.out.warn(f"deploy stopped at {outcome.stopped_at} on a transient error; resuming once")
                again = self._run_deploy(deploy.ssh_argv(cmd), self.logs / "deploy-resumed.log")
                again.done = {**outcome.done, **again.done}
                outcome = again
            for step, seconds in outcome.done.items():
                self.report.phases.append(PhaseResult(f"  {step}", seconds, "ok", "", within="deploy"))
            if outcome.stopped_at is None:
                note.detail = f"{len(outcome.done)} steps, cluster.yml complete{resumed}"
                return
            why = outcome.explained or explain_stop(outcome.message)
            self.report.stopped_at = outcome.stopped_at
            self.report.stop_reason = f"{why or 'no container limit explains it'} — {outcome.message}"
            note.status = "stopped"
            note.detail = f"{len(outcome.done)} steps done; stopped at {outcome.stopped_at}{resumed}"
            if outcome.stopped_at in CONTAINER_STEPS or why is None:
                note.status = "failed"
                self.out.error(f"deploy failed at {outcome.stopped_at}: {outcome.message}", f"logs: {self.logs}")

    def _run_deploy(self, argv: list[str], log: Path) -> DeployOutcome:
        code = stream_to_log(argv, log, "kubeplay deploy", self.out, SUBPROCESS_TIMEOUT)
        return parse_deploy_output(log.read_text(encoding="utf-8", errors="replace"), code)

    def check(self, lab: Lab, base_status: Path) -> None:
        with self.clock.phase("checks on every node") as note:
            site = probes.Site(
                deploy=lab.nodes[0],
                nodes=lab.nodes[1:],
                subnet=lab.record.subnet,
                bundle=self.bundle,
                manifest=read_manifest(self.bundle),
                base_dpkg_status=base_status,
                domain=inputs.DOMAIN,
                http_port=inputs.HTTP_PORT,
            )
            with self.out.status("gathering evidence on the nodes"):
                self.report.checks = probes.run_checks(site, self.prepared)
            failed = len(self.report.failed_checks())
            note.detail = f"{len(self.report.checks) - failed}/{len(self.report.checks)} passed"
            if not self.prepared:
                note.detail += "; no node prep without kubespray: package, CA, chrony and image checks skipped"
            if failed:
                note.status = "failed"

    def _rootfs(self) -> Path:
        started = time.monotonic()
        base, built = rootfs.ensure_base_tree(NODE_ROOTFS, settings.from_environ().cache.lab)
        detail = "mmdebstrap, Debian 12" if built else "cached"
        self.report.phases.append(
            PhaseResult("lab rootfs (beside the build)", time.monotonic() - started, "ok", detail, within="parallel")
        )
        return base

    def cleanup(self) -> None:
        with self.clock.phase("cleanup") as note:
            done = []
            if self.lab is not None and self.lab.nodes:
                if self.keep:
                    self.report.kept.append(
                        f"lab {LAB_NAME} (kubeplay lab ssh node0 --name {LAB_NAME}; lab down --name {LAB_NAME})"
                    )
                else:
                    self.lab.down()
                    done.append("lab down")
            if self.archive is not None:
                if self.keep:
                    self.report.kept.append(str(self.archive))
                else:
                    shutil.rmtree(self.archive.parent, ignore_errors=True)
                    done.append("archive removed")
            note.detail = ", ".join([*done, "simulator stopped", f"build cache kept in {self.bundle}"])

    def phases(self, rootfs_ready: Future[Path]) -> None:
        """The rehearsal's phases in order (`rootfs_ready`: the lab rootfs, built beside the bundle)."""
        self.build()
        base = rootfs_ready.result()
        lab = self.lab_up()
        self.install(lab)
        self.deploy(lab)
        self.check(lab, base / "var/lib/dpkg/status")

    def run(self) -> DemoReport:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=1) as pool:
            # The lab rootfs (mmdebstrap, cached) builds while the bundle builds: both mostly wait on the mirror.
            rootfs_ready = pool.submit(self._rootfs)
            try:
                self.phases(rootfs_ready)
            except Interrupted:
                raise  # Ctrl-C ends the demo (exit 130) once `finally` has taken the lab down, not as a failed check
            except (KubeplayError, subprocess.SubprocessError, OSError) as exc:
                self.report.error = _describe(exc)
            finally:
                try:
                    self.cleanup()
                except KubeplayError as exc:
                    self.report.error = (self.report.error + "; " if self.report.error else "") + _describe(exc)
        self.report.wall_seconds = time.monotonic() - started
        return self.report


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KubeplayError):
        return exc.message + (f" ({exc.hint})" if exc.hint else "")
    if isinstance(exc, subprocess.CalledProcessError):
        return f"{exc.cmd!r} exited {exc.returncode}: {(exc.stderr or exc.stdout or '')[-600:]}"
    return f"{type(exc).__name__}: {exc}"


def _bytes(value: object) -> str:
    return human_bytes(int(str(value or 0)))


def run_demo(workdir: Path, *, out: Output, nodes: int = 4, keep: bool = False) -> DemoReport:
    """Run the whole rehearsal in `workdir` (created; its build/ cache is reused) and print the report.

    Returns the DemoReport (its `ok` says whether every check passed); also saved as workdir/report.json.
    Raises BadInput, before doing anything, for fewer than 2 nodes or a machine that cannot run lab nodes
    (not root, systemd-nspawn or mmdebstrap missing).
    """
    if nodes < 2:
        raise BadInput(f"the demo needs at least 2 nodes (a deploy node and a cluster node), not {nodes}")
    reason = unavailable_reason()
    if reason:
        raise BadInput(f"the demo cannot run lab nodes here: {reason}", hint="run it as root on Debian 12 (make demo)")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    report = Demo(workdir, nodes, keep, out).run()
    report.save(workdir / "report.json")
    render_report(report, out)
    return report
