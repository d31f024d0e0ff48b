"""Lab nodes: `Lab.up(n)` boots n air-gapped Debian nodes; `lab.down()` removes exactly what it created.

    with Lab.up(2, name="t1") as lab:
        lab.nodes[0].run(["hostname"]).stdout          # ssh from the lab side
        lab.nodes[0].copy_in(Path("bundle.tar.zst"), "/root/bundle.tar.zst")

Every creation step is first written to the state file (see `record.py`); `down()` works from that
file alone, so it also finishes the job after `up` crashed or from another process (`kubeplay lab down`).
`power_off(name, cut=...)` and `power_on(name)` switch one node off and on again, its disk kept (`boot.py`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from kubeplay import settings
from kubeplay.errors import BadInput, KubeplayError, LabError, LabStateError
from kubeplay.lab import boot, machines, network, record, rootfs, ssh, teardown
from kubeplay.lab.boot import BOOT_TIMEOUT
from kubeplay.lab.record import LabRecord, NodeRecord, Resource

__all__ = ["BOOT_TIMEOUT", "DEFAULT_SUBNET", "Lab", "LabError", "LabNode", "unavailable_reason"]

DEFAULT_SUBNET = "10.213.0.0/24"


@dataclass
class LabNode:
    """One booted node: `name`, `ip`, and ways to run commands in it and copy files into it."""

    name: str
    ip: str
    machine: str
    root: Path
    lab_netns: str
    ssh_options: list[str]

    def ssh_argv(self, cmd: list[str] | str | None = None, tty: bool = False) -> list[str]:
        """argv that runs `cmd` (or an interactive shell) on this node as root over ssh."""
        return ssh.ssh_argv(self.lab_netns, self.ssh_options, self.ip, cmd, tty=tty)

    def run(
        self, cmd: list[str] | str, timeout: float = 120, check: bool = False, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` on the node (a list is shell-quoted; a string goes to the remote shell as is).

        Returns the CompletedProcess (text); with check=True raises CalledProcessError on non-zero exit.
        """
        return subprocess.run(
            self.ssh_argv(cmd), input=input, capture_output=True, text=True, timeout=timeout, check=check
        )

    def copy_in(self, src: Path, dest: str) -> Path:
        """Copy a host file or directory to absolute path `dest` inside the node; return the host path written.

        Writes straight into the node's root directory (fast for multi-GB bundles). Refuses a `dest`
        whose parents inside the node are symlinks, so nothing lands outside the node's tree.
        """
        if not dest.startswith("/"):
            raise BadInput(f"destination {dest!r} inside {self.name} must be an absolute path")
        parts = [p for p in Path(dest).parts[1:] if p not in ("", ".")]
        if ".." in parts or not parts:
            raise BadInput(f"destination {dest!r} inside {self.name} must not contain '..' or be '/'")
        target = self.root
        for part in parts[:-1]:
            target = target / part
            if target.is_symlink():
                raise BadInput(f"{dest!r}: /{target.relative_to(self.root)} is a symlink inside {self.name}; refusing")
            target.mkdir(mode=0o755, exist_ok=True)
        target = target / parts[-1]
        if target.is_symlink():
            raise BadInput(f"{dest!r} is a symlink inside {self.name}; refusing to write through it")
        if src.is_dir():
            shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(src, target)
        return target


def _node_from(rec: NodeRecord, lab: LabRecord) -> LabNode:
    options = ssh.ssh_options(Path(lab.key), Path(lab.known_hosts))
    return LabNode(
        name=rec.name, ip=rec.ip, machine=rec.machine, root=Path(rec.root), lab_netns=lab.netns, ssh_options=options
    )


def _check_request(name: str, subnet: str, nodes: int, nspawn_env: Mapping[str, str]) -> network.AddressPlan:
    """The addresses for `nodes` nodes on `subnet`; BadInput for a bad name, subnet or environment, missing tools."""
    if not network.valid_name(name):
        raise BadInput(f"lab name {name!r} is invalid", hint="1-12 characters: lowercase letters, digits, '-'")
    machines.check_env(nspawn_env)
    plan = network.plan_addresses(subnet, nodes)
    _check_prerequisites()
    network.check_subnet_free(plan.subnet)
    return plan


def _free_lab_dir(name: str, state_root: Path) -> Path:
    """Where lab `name` will live; BadInput when a lab is up there or the directory holds something else."""
    lab_dir = state_root / name
    if record.state_path(lab_dir).exists():
        raise BadInput(f"lab {name!r} is already up ({lab_dir})", hint=f"run `kubeplay lab down --name {name}` first")
    if lab_dir.exists():
        raise BadInput(f"{lab_dir} exists but holds no lab state", hint="remove it or pick another --name")
    return lab_dir


def _new_record(
    name: str,
    plan: network.AddressPlan,
    lab_dir: Path,
    spec: rootfs.RootfsSpec,
    nspawn_args: tuple[str, ...],
    nspawn_env: Mapping[str, str],
) -> LabRecord:
    """The lab's record before anything exists: its names, addresses and paths (node0, node1, ...)."""
    rec = LabRecord(
        name=name,
        subnet=str(plan.subnet),
        bridge_ip=str(plan.bridge_ip),
        netns=f"kplab-{name}",
        dir=str(lab_dir),
        key=str(lab_dir / "id_ed25519"),
        known_hosts=str(lab_dir / "known_hosts"),
        created=time.time(),
        nspawn_args=list(nspawn_args),
        nspawn_env=dict(nspawn_env),
        rootfs_key=spec.key(),
    )
    for i, ip in enumerate(plan.node_ips):
        node = f"node{i}"
        rec.nodes.append(
            NodeRecord(
                name=node,
                ip=str(ip),
                netns=f"kplab-{name}-{node}",
                link=f"v-{node}",
                machine=f"kplab-{name}-{node}",
                root=str(lab_dir / "nodes" / node),
                log=str(lab_dir / f"{node}.log"),
            )
        )
    return rec


def _check_namespaces_free(rec: LabRecord) -> None:
    taken = [ns for ns in (rec.netns, *(n.netns for n in rec.nodes)) if network.netns_exists(ns)]
    if taken:
        raise BadInput(
            f"network namespace(s) {', '.join(taken)} already exist; lab {rec.name!r} seems to be up elsewhere",
            hint="pick another --name, or bring that lab down with its own --state-dir",
        )


@dataclass
class Lab:
    """A lab that is up (or was, if `down()` has run). Use `Lab.up(...)` or `Lab.load(name)`."""

    record: LabRecord
    nodes: list[LabNode] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    _popens: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def netns(self) -> str:
        """The lab-side namespace (holding the bridge); run host tools here to reach the nodes."""
        return self.record.netns

    @property
    def ssh_options(self) -> list[str]:
        """ssh options (key, pinned known_hosts) usable by ssh, scp or Ansible's ssh_args."""
        return ssh.ssh_options(Path(self.record.key), Path(self.record.known_hosts))

    def lab_side(self, argv: list[str]) -> list[str]:
        """`argv` wrapped to run in the lab-side namespace (it reaches every node; nothing else does)."""
        return ["ip", "netns", "exec", self.record.netns, *argv]

    def give_ssh_access(self, node: LabNode) -> None:
        """Let `node` ssh to every lab node as root (the lab key and known_hosts in its /root/.ssh/).

        For a deploy node that runs Ansible against the others, as the demo's node0 does.
        """
        node.copy_in(Path(self.record.key), "/root/.ssh/id_ed25519")
        node.copy_in(Path(self.record.known_hosts), "/root/.ssh/known_hosts")
        (node.root / "root" / ".ssh" / "id_ed25519").chmod(0o600)

    def node(self, name: str) -> LabNode:
        """The node called `name`; BadInput naming the existing ones otherwise."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise BadInput(f"lab {self.name} has no node {name!r}", hint=f"nodes: {', '.join(n.name for n in self.nodes)}")

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.down()

    @classmethod
    def load(cls, name: str = "lab", state_root: Path | None = None) -> Lab:
        """The lab `name` as recorded on disk (for `ssh`, `status` and `down` from another process)."""
        rec = record.load((state_root or record.default_state_root()) / name)
        return cls(record=rec, nodes=[_node_from(n, rec) for n in rec.nodes])

    @classmethod
    def up(
        cls,
        nodes: int,
        *,
        name: str = "lab",
        subnet: str | None = None,
        state_root: Path | None = None,
        cache_dir: Path | None = None,
        spec: rootfs.RootfsSpec | None = None,
        nspawn_args: tuple[str, ...] = (),
        nspawn_env: Mapping[str, str] | None = None,
        boot_timeout: float = BOOT_TIMEOUT,
    ) -> Lab:
        """Build (or reuse) the rootfs, create network and nodes, boot them, wait for sshd.

        `nspawn_args` are extra systemd-nspawn options and `nspawn_env` extra environment variables for
        systemd-nspawn (e.g. SYSTEMD_NSPAWN_API_VFS_WRITABLE=network); both are recorded so `power_on`
        boots a node again the same way. Returns the running Lab. Raises BadInput, before creating anything,
        for a bad name, subnet or environment, missing tools, or a lab (or its namespaces) already there; on
        any later failure everything created so far is removed and the error re-raised.
        """
        spec = spec or rootfs.RootfsSpec()
        plan = _check_request(name, subnet or settings.from_environ().lab_subnet, nodes, nspawn_env or {})
        lab_dir = _free_lab_dir(name, state_root or record.default_state_root())
        rec = _new_record(name, plan, lab_dir, spec, nspawn_args, nspawn_env or {})
        _check_namespaces_free(rec)
        lab = cls(record=rec)
        t0 = time.monotonic()
        try:
            # The cache entry stays locked (shared) until the node roots are copied: prune skips it meanwhile.
            with rootfs.base_tree(spec, cache_dir or settings.from_environ().cache.lab) as (base, built):
                lab.timings["rootfs_build" if built else "rootfs_cached"] = time.monotonic() - t0
                lab._create(base, plan)
            lab._boot(rec.nodes, boot_timeout)
        except BaseException:
            lab.down()
            raise
        return lab

    def _begin(self, res: Resource) -> Resource:
        self.record.resources.append(res)
        record.save(self.record)
        return res

    def _finish(self, res: Resource) -> None:
        res.done = True
        record.save(self.record)

    def _create_netns(self, name: str) -> None:
        # Checked before it is recorded: a namespace that already exists is someone else's; `down` must keep it.
        if network.netns_exists(name):
            raise LabError(
                f"network namespace {name} already exists and belongs to no lab recorded here",
                hint="another lab with this name may be up (elsewhere): pick another --name",
            )
        res = self._begin(Resource(kind="netns", name=name))
        network.create_netns(name)
        self._finish(res)

    def _create(self, base: Path, plan: network.AddressPlan) -> None:
        rec = self.record
        lab_dir = Path(rec.dir)
        lab_dir.mkdir(parents=True, mode=0o700)
        self._finish(self._begin(Resource(kind="dir", name=str(lab_dir))))
        pubkey = ssh.generate_key(Path(rec.key), f"kubeplay-lab-{rec.name}")
        t0 = time.monotonic()
        self._create_netns(rec.netns)
        network.create_bridge(rec.netns, plan.bridge_ip, plan.subnet)
        for node in rec.nodes:
            self._create_netns(node.netns)
            res = self._begin(Resource(kind="link", name=node.link, netns=rec.netns))
            network.create_node_link(
                rec.netns, node.netns, node.link, plan.node_ips[rec.nodes.index(node)], plan.subnet
            )
            self._finish(res)
        self.timings["network"] = time.monotonic() - t0
        t0 = time.monotonic()
        hosts = tuple((n.ip, n.name) for n in rec.nodes)
        (lab_dir / "nodes").mkdir(mode=0o755)
        roots = [self._begin(Resource(kind="dir", name=node.root)) for node in rec.nodes]

        def make_root(node: NodeRecord) -> str:
            rootfs.copy_tree(base, Path(node.root))
            ident = rootfs.NodeIdentity(hostname=node.name, authorized_key=pubkey, hosts=hosts)
            return rootfs.personalise(Path(node.root), ident)

        # Copies are I/O bound: run them side by side (bounded), record them done together.
        with ThreadPoolExecutor(max_workers=min(4, len(rec.nodes))) as pool:
            host_keys = list(pool.map(make_root, rec.nodes))
        for res in roots:
            self._finish(res)
        known = [(n.ip, n.name, key) for n, key in zip(rec.nodes, host_keys, strict=True)]
        Path(rec.known_hosts).write_text(ssh.known_hosts_lines(known), encoding="utf-8")
        self.timings["rootfs_copy"] = time.monotonic() - t0
        self.nodes = [_node_from(n, rec) for n in rec.nodes]

    def _boot(self, nodes: list[NodeRecord], boot_timeout: float) -> None:
        t0 = time.monotonic()
        for node in nodes:
            res = self._begin(Resource(kind="process", name=node.machine))
            boot.start_machine(self.record, node, res, self._popens)
            self._finish(res)
        boot.wait_ready(self.record, nodes, boot_timeout)
        self.timings["boot"] = time.monotonic() - t0

    def _reload(self) -> None:
        # The state file is the truth: another process may have powered a node off or on since we read it.
        # An unreadable one (hand-edited, say) leaves us with what we hold, all we know then.
        if record.state_path(Path(self.record.dir)).is_file():
            with contextlib.suppress(LabStateError):
                self.record = record.load(Path(self.record.dir))

    def power_off(self, name: str, cut: bool = False) -> None:
        """Stop node `name`; its disk (root directory) stays as it was, for `power_on`.

        cut=False halts it cleanly (SIGTERM to systemd-nspawn, SIGKILL after a deadline); cut=True SIGKILLs
        the container's init so every process in it dies at once, mid-write, as in a power cut.
        Raises BadInput if there is no such node or it is not running, LabError if it would not stop.
        """
        self.node(name)  # BadInput naming the nodes, also once the lab is down
        with record.power_lock(Path(self.record.dir)):
            self._reload()
            boot.power_off(self.record, name, self._popens, cut=cut)

    def power_on(self, name: str, timeout: float = BOOT_TIMEOUT) -> None:
        """Boot node `name` again from its disk with the lab's recorded nspawn options and environment.

        Records its new PID in the state file (so `down` from any process stops it) and returns once sshd
        answers. Raises BadInput if there is no such node or it is running, LabError if it does not come up.
        """
        self.node(name)
        with record.power_lock(Path(self.record.dir)):
            self._reload()
            boot.power_on(self.record, name, self._popens, timeout)

    def down(self) -> list[str]:
        """Remove everything this lab recorded, newest first; return what was removed.

        Raises LabError listing what could not be removed (the state file then keeps those entries).
        """
        self._reload()
        rec = self.record
        removed: list[str] = []
        failed: list[str] = []
        procs = [r for r in rec.resources if r.kind == "process" and r.pid is not None]
        still = machines.stop([(r.pid, r.start_time or 0) for r in procs if r.pid], self._popens)
        for res in procs:
            if res.pid in still:
                failed.append(f"process {res.pid} ({res.name}) did not stop")
            else:
                removed.append(f"process {res.pid} ({res.name})")
        if still:
            # A node still running keeps its root, namespace and the state file: nothing is pulled from under it.
            raise LabError(
                f"lab {rec.name}: {'; '.join(failed)}; nothing else was removed",
                hint=f"find out why PID(s) {', '.join(map(str, still))} ignore SIGKILL, then run `kubeplay lab down` again",
            )
        keep: list[Resource] = []
        for res in reversed(rec.resources):
            if res.kind == "process":
                continue
            if res.name == rec.dir and res.kind == "dir" and failed:
                keep.append(res)  # the lab directory holds the state file: keep it while anything is left
                continue
            try:
                if teardown.remove_resource(res, Path(rec.dir)):
                    removed.append(f"{res.kind} {res.name}")
            except (KubeplayError, OSError) as exc:
                failed.append(f"{res.kind} {res.name}: {exc}")
                keep.append(res)
        rec.resources = [r for r in rec.resources if r in keep]
        if failed:
            if Path(rec.dir).is_dir():
                record.save(rec)
            raise LabError(
                f"lab {rec.name}: could not remove: {'; '.join(failed)}",
                hint="fix the cause, then run `kubeplay lab down` again",
            )
        self.nodes = []
        return removed


def unavailable_reason() -> str | None:
    """Why lab nodes cannot run on this machine (not root, a tool missing), or None if they can."""
    if os.geteuid() != 0:
        return "lab nodes need root (network namespaces, systemd-nspawn)"
    for tool, package in _TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {package})"
    return None


_TOOLS = (
    ("systemd-nspawn", "systemd-container"),
    ("mmdebstrap", "mmdebstrap"),
    ("ip", "iproute2"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
)


def _check_prerequisites() -> None:
    reason = unavailable_reason()
    if reason:
        raise LabError(
            reason, hint="run as root on Debian with systemd-container, mmdebstrap, iproute2, openssh-client"
        )
