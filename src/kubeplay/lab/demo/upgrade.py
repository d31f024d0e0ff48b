"""`kubeplay demo --upgrade`: an upgrade rehearsed on lab nodes with a delta bundle.

Two paths: `minor` (the older kubespray release in ../shared at its default Kubernetes -> the newer at
its default: v2.30.0 at 1.34.3 -> v2.31.0 at 1.35.4) and `patch` (the newer release at the patch before
its default -> its default: 1.35.3 -> 1.35.4).

simulated upstream serving both -> build the
older -> pack -> lab nodes -> install.sh on node0 -> deploy (to the container limit) -> `kubeplay status
--inventory` on node0, carried out -> build the newer against it (`build --base`: a delta) -> pack ->
carried in -> install.sh of the delta -> checks on every node that every file and image of *both*
versions is fetchable as kubespray fetches it and that the OS repo still verifies -> `kubeplay upgrade
--to <newer>` (to the container limit, like deploy) -> report.
"""

from __future__ import annotations

import json
import re
import shutil
from concurrent.futures import Future
from pathlib import Path

from kubeplay.bundle.delta import read_delta
from kubeplay.bundle.manifest import read_manifest
from kubeplay.catalog.examples import RELEASE_NAME_RE, shared_dir
from kubeplay.console import Output
from kubeplay.errors import BadInput
from kubeplay.lab.demo import inputs, probes
from kubeplay.lab.demo.commands import SUBPROCESS_TIMEOUT, events, kubeplay_argv, run_logged, stream_to_log
from kubeplay.lab.demo.deploy_outcome import CONTAINER_STEPS, explain_stop, parse_deploy_output
from kubeplay.lab.demo.pipeline import CONFIG_IN_NODE, Demo, _bytes
from kubeplay.lab.demo.report import CheckResult, DemoReport, PhaseResult, render_report
from kubeplay.lab.nodes import Lab, unavailable_reason
from kubeplay.lab.upstream import UpstreamSimulator
from kubeplay.lab.upstream.release import ServedRelease, serve_release, serve_release_versions

INVENTORY_IN_NODE = "/root/inventory.json"


def release_pair(shared: Path | None = None) -> tuple[Path, Path]:
    """The two newest kubespray releases in ../shared (older, newer); BadInput when there are fewer."""
    folder = (shared or shared_dir()) / "upstream" / "kubespray"
    found = sorted(
        (tuple(int(x) for x in m.groups()), p)
        for p in (folder.glob("kubespray-v*.tar.gz") if folder.is_dir() else [])
        if (m := RELEASE_NAME_RE.search(p.name))
    )
    if len(found) < 2:
        raise BadInput(
            f"{folder}: the upgrade rehearsal needs two kubespray releases, found {len(found)}",
            hint="put kubespray-vX.Y.Z.tar.gz of two consecutive releases there (../shared/upstream/kubespray)",
        )
    return found[-2][1], found[-1][1]


def previous_patch(source: Path) -> tuple[str, str]:
    """(the Kubernetes patch before the release's default, the default) for the patch path; BadInput when
    the release's checksums carry no earlier patch of that minor."""
    from kubeplay.catalog.planner import make_plan  # noqa: PLC0415
    from kubeplay.catalog.source import load_tree  # noqa: PLC0415
    from kubeplay.config.bundle import BundleSpec  # noqa: PLC0415

    tree = load_tree(source)
    spec = BundleSpec.model_validate({"kubespray": {"version": tree.version or "v0.0.0", "source": str(source)}})
    default = make_plan(spec, tree).kube_version.removeprefix("v")
    major, minor, patch = (int(x) for x in default.split("."))
    text = (tree.root / "roles/kubespray_defaults/vars/main/checksums.yml").read_text(encoding="utf-8")
    for earlier in range(patch - 1, -1, -1):
        if re.search(rf"^\s+{major}\.{minor}\.{earlier}:", text, re.M):
            return f"{major}.{minor}.{earlier}", default
    raise BadInput(f"{source.name}: its checksums carry no Kubernetes {major}.{minor}.x before {default}")


class UpgradeDemo(Demo):
    """The upgrade rehearsal; phases reuse Demo's (lab up, install, deploy, checks) where they are the same."""

    def __init__(self, workdir: Path, nodes: int, keep: bool, out: Output, path: str = "minor") -> None:
        super().__init__(workdir, nodes, keep, out)
        self.path = path
        # not the plain demo's build cache: another release or Kubernetes version
        self.bundle = workdir / f"bundle-{path}-base"
        self.sim: UpstreamSimulator | None = None
        self.releases: dict[str, ServedRelease] = {}
        self.target = workdir / f"bundle-{path}-target"
        self.delta: Path | None = None
        self.target_version = ""

    # -- build side ------------------------------------------------------------------------------------

    def serve_upstream(self) -> tuple[Path, Path]:
        older, newer = release_pair()
        upstream_dir = self.workdir / "upstream"
        shutil.rmtree(upstream_dir, ignore_errors=True)
        self.sim = UpstreamSimulator(upstream_dir, registry_auth="token")
        with self.clock.phase(f"simulated upstream ({self.path} upgrade)") as note:
            self.sim.start()
            if self.path == "patch":
                kubes = previous_patch(newer)
                base, target = serve_release_versions(self.sim, newer, kubes, arches=["amd64"])
                self.releases = {"base": base, "target": target}
            else:
                for name, source in (("base", older), ("target", newer)):
                    self.releases[name] = serve_release(self.sim, source, arches=["amd64"], image_arches=["amd64"])
            note.detail = ", ".join(
                f"kubespray {r.version} Kubernetes {r.plan.kube_version}: {len(r.plan.files)} files, {len(r.images)} images"
                for r in self.releases.values()
            )
        return older, newer

    def _spec(self, name: str) -> Path:
        assert self.sim is not None
        creds = self.sim.credentials_file(self.workdir / "credentials.yaml")
        data = inputs.bundle_spec(self.releases[name].bundle_spec(self.sim.mirrors(), creds))
        path = self.workdir / f"bundle-{self.path}-{name}.yaml"
        path.write_text(inputs.dump(data), encoding="utf-8")
        return path

    def build_base(self) -> None:
        with self.clock.phase(f"kubeplay build (kubespray {self.releases['base'].version})") as note:
            text = run_logged(
                kubeplay_argv("build", str(self._spec("base")), "-o", str(self.bundle)),
                self.logs / "build.log",
                "kubeplay build",
                self.out,
            )
            note.detail = f"fetched {_bytes(next((e.get('fetched') for e in events(text, 'built')), 0))}"
        self._check_install_files()
        self._record_built()
        base, target = self.releases["base"], self.releases["target"]
        self.report.built.kubespray = f"{base.version} -> {target.version} ({self.path} upgrade)"
        self.archive = self._pack(self.bundle, "packed")
        self.report.built.archive = self.archive.name
        self.report.built.archive_bytes = self.archive.stat().st_size

    def _pack(self, bundle: Path, into: str) -> Path:
        with self.clock.phase(f"kubeplay pack {bundle.name}") as note:
            text = run_logged(
                kubeplay_argv("pack", str(bundle), "-o", str(self.workdir / into)),
                self.logs / f"pack-{bundle.name}.log",
                "kubeplay pack",
                self.out,
            )
            packed = events(text, "packed")[-1]
            note.detail = f"{Path(str(packed['archive'])).name}, {_bytes(packed['size'])}"
            return Path(str(packed["archive"]))

    def build_delta(self, lab: Lab) -> None:
        deploy = lab.nodes[0]
        with self.clock.phase("kubeplay status --inventory on node0, carried out") as note:
            deploy.run(["kubeplay", "status", "--inventory", "-o", INVENTORY_IN_NODE], timeout=300, check=True)
            inventory = self.workdir / "inventory.json"
            inventory.write_bytes((deploy.root / INVENTORY_IN_NODE.lstrip("/")).read_bytes())
            listed = json.loads(inventory.read_text(encoding="utf-8"))
            note.detail = f"{len(listed['paths'])} paths of {len(listed['bundles'])} bundle(s), {_bytes(inventory.stat().st_size)}"
        with self.clock.phase(f"kubeplay build --base (kubespray {self.releases['target'].version})") as note:
            text = run_logged(
                kubeplay_argv("build", str(self._spec("target")), "-o", str(self.target), "--base", str(inventory)),
                self.logs / "build-delta.log",
                "kubeplay build --base",
                self.out,
            )
            self.delta = _delta_dir(text, self.target)
            record = read_delta(self.delta)
            assert record is not None
            self.target_version = record.target.kube_version
            ratio = record.carried_size / record.full_size if record.full_size else 0.0
            note.detail = (
                f"delta {_bytes(record.carried_size)} of a {_bytes(record.full_size)} bundle ({ratio:.1%}), "
                f"Kubernetes {self.target_version}"
            )
        self.archive = self._pack(self.delta, "packed-delta")

    # -- air-gapped side -------------------------------------------------------------------------------

    def check_both(self, lab: Lab, base_status: Path) -> None:
        """Every file and image of both versions, from every node, as kubespray fetches them; the repo."""
        with self.clock.phase("checks on every node (both versions)") as note:
            results: list[CheckResult] = []
            for label, bundle in (("base", self.bundle), ("target", self.target)):
                manifest = read_manifest(bundle)
                site = probes.Site(
                    deploy=lab.nodes[0], nodes=lab.nodes[1:], subnet=lab.record.subnet, bundle=bundle,
                    manifest=manifest, base_dpkg_status=base_status, domain=inputs.DOMAIN,
                    http_port=inputs.HTTP_PORT,
                )  # fmt: skip
                with self.out.status(f"fetching every file and image of the {label} version on every node"):
                    for c in probes.run_checks(site, self.prepared):
                        results.append(CheckResult(f"{c.check} [{manifest.kube_version}]", c.node, c.passed, c.detail))
            results.extend(self._repo_verifies(lab))
            self.report.checks = results
            failed = [c for c in results if not c.passed]
            note.detail = f"{len(results) - len(failed)}/{len(results)} passed"
            if failed:
                note.status = "failed"

    def _repo_verifies(self, lab: Lab) -> list[CheckResult]:
        """apt-get update on every cluster node (its only source is the served repo, signed-by the deploy
        node's key it got at node prep): the union repo still verifies after the delta."""
        out = []
        for node in lab.nodes[1:]:
            r = node.run(["apt-get", "update", "-q"], timeout=300)
            ok = r.returncode == 0 and "NO_PUBKEY" not in r.stdout + r.stderr and "W: " not in r.stderr
            out.append(CheckResult("served OS repo verifies after the delta (apt-get update)", node.name, ok,
                                   (r.stdout + r.stderr).strip().splitlines()[-1][:160] if (r.stdout + r.stderr).strip() else ""))  # fmt: skip
        return out

    def upgrade(self, lab: Lab) -> None:
        deploy = lab.nodes[0]
        if not self.prepared:
            self.report.phases.append(PhaseResult("kubeplay upgrade", 0.0, "skipped", "no cluster was deployed"))
            return
        with self.clock.phase(f"kubeplay upgrade --to {self.target_version}") as note:
            cmd = f"kubeplay --json-events upgrade -c {CONFIG_IN_NODE} --to {self.target_version} 2>&1"
            log = self.logs / "upgrade.log"
            code = stream_to_log(deploy.ssh_argv(cmd), log, "kubeplay upgrade", self.out, SUBPROCESS_TIMEOUT)
            outcome = parse_deploy_output(log.read_text(encoding="utf-8", errors="replace"), code, command="upgrade")
            for step, seconds in outcome.done.items():
                self.report.phases.append(PhaseResult(f"  {step}", seconds, "ok", "", within="upgrade"))
            if outcome.stopped_at is None:
                note.detail = f"{len(outcome.done)} steps, upgrade-cluster.yml complete"
                return
            why = outcome.explained or explain_stop(outcome.message)
            self.report.stopped_at = f"upgrade: {outcome.stopped_at}"
            self.report.stop_reason = f"{why or 'no container limit explains it'} — {outcome.message}"
            note.status = "stopped"
            note.detail = f"{len(outcome.done)} steps done; stopped at {outcome.stopped_at}"
            if outcome.stopped_at in (*CONTAINER_STEPS, "path") or why is None:
                note.status = "failed"
                self.out.error(f"upgrade failed at {outcome.stopped_at}: {outcome.message}", f"logs: {self.logs}")

    def cleanup(self) -> None:
        if self.sim is not None:
            self.sim.stop()
        super().cleanup()

    def phases(self, rootfs_ready: Future[Path]) -> None:
        self.serve_upstream()
        self.build_base()
        base = rootfs_ready.result()
        lab = self.lab_up()
        self.install(lab)
        self.deploy(lab)
        self.build_delta(lab)
        self.install(lab)
        self.check_both(lab, base / "var/lib/dpkg/status")
        self.upgrade(lab)


def _delta_dir(build_output: str, target: Path) -> Path:
    """The delta directory `kubeplay build --base` wrote: from its event, else the newest beside the output."""
    for event in reversed(events(build_output, "delta")):
        if event.get("path"):
            return Path(str(event["path"]))
    candidates = sorted(target.parent.glob(f"{target.name}-delta-*"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise BadInput(f"kubeplay build --base wrote no delta beside {target}", hint="see logs/build-delta.log")
    return candidates[-1]


def run_upgrade_demo(
    workdir: Path, *, out: Output, nodes: int = 3, keep: bool = False, path: str = "minor"
) -> DemoReport:
    """Run the upgrade rehearsal (`path`: minor or patch) in `workdir`; report saved as
    workdir/report-upgrade-<path>.json."""
    if path not in ("minor", "patch"):
        raise BadInput(f"--upgrade-path {path}: not an upgrade path", hint="minor or patch")
    if nodes < 2:
        raise BadInput(f"the demo needs at least 2 nodes (a deploy node and a cluster node), not {nodes}")
    reason = unavailable_reason()
    if reason:
        raise BadInput(f"the demo cannot run lab nodes here: {reason}", hint="run it as root on Debian 12 (make demo)")
    release_pair()  # two releases, or refuse before anything starts
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    report = UpgradeDemo(workdir, nodes, keep, out, path).run()
    report.save(workdir / f"report-upgrade-{path}.json")
    render_report(report, out)
    return report
