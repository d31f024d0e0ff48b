"""`kubeplay lab up|down|status|ssh|cp|power-off|power-on|cache prune`: air-gapped rehearsal nodes (systemd-nspawn, network namespaces)."""

# ruff: noqa: PLC0415  (kubeplay subpackages are imported in the command that uses them: fast start-up)

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kubeplay import settings
from kubeplay.cli.output import command_output
from kubeplay.console import Table, human_bytes
from kubeplay.errors import BadInput

if TYPE_CHECKING:
    from kubeplay.lab.nodes import Lab

# Option defaults, needed when typer builds the commands at start-up. Copies of kubeplay.lab.nodes.DEFAULT_SUBNET
# and kubeplay.lab.boot.BOOT_TIMEOUT: importing those modules here would load pydantic on every kubeplay run.
DEFAULT_SUBNET = "10.213.0.0/24"
BOOT_TIMEOUT = 120.0

lab_app = typer.Typer(help="Air-gapped lab nodes: Debian in systemd-nspawn, a private subnet, no route out.")

NameOpt = Annotated[
    str | None,
    typer.Option("--name", envvar=settings.LAB_NAME, help="Lab name (default: the only lab that is up, else 'lab')."),
]
DirOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", envvar=settings.LAB_DIR, help="Where labs live (default /var/lib/kubeplay/lab)."),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Rootfs cache (default: lab/ in the cache root, see KUBEPLAY_CACHE_DIR)."),
]
NodeArg = Annotated[str, typer.Argument(help="Node name, e.g. node1.")]


def _load(name: str | None, state_dir: Path | None) -> Lab:
    from kubeplay.lab import record
    from kubeplay.lab.nodes import Lab

    if name is None:
        labs = record.list_labs(state_dir or record.default_state_root())
        name = labs[0].name if len(labs) == 1 else "lab"
    return Lab.load(name, state_dir)


@lab_app.command("up")
def up(
    ctx: typer.Context,
    *,
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="How many nodes (node0, node1, ...).")] = 2,
    name: Annotated[
        str, typer.Option("--name", envvar=settings.LAB_NAME, help="Lab name (1-12 of a-z, 0-9, -).")
    ] = "lab",
    subnet: Annotated[
        str, typer.Option("--subnet", envvar=settings.LAB_SUBNET, help="Private IPv4 subnet, only inside the lab.")
    ] = DEFAULT_SUBNET,
    state_dir: DirOpt = None,
    nspawn_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--nspawn-arg", help="Extra systemd-nspawn option for every node (repeatable), e.g. --capability=all."
        ),
    ] = None,
    nspawn_env: Annotated[
        list[str] | None,
        typer.Option(
            "--nspawn-env",
            help="KEY=VALUE for systemd-nspawn's environment (repeatable; kept for power-on), "
            "e.g. SYSTEMD_NSPAWN_API_VFS_WRITABLE=network.",
        ),
    ] = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Boot N air-gapped nodes reachable by `kubeplay lab ssh`; nothing else can be reached from them."""
    from kubeplay.lab import machines
    from kubeplay.lab.nodes import Lab

    out = command_output(ctx)
    env = machines.parse_env(nspawn_env or [])
    out.info(f"lab {name}: {nodes} node(s) on {subnet} (building the rootfs on first use takes ~20 s)")
    lab = Lab.up(
        nodes,
        name=name,
        subnet=subnet,
        state_root=state_dir,
        cache_dir=cache_dir,
        nspawn_args=tuple(nspawn_arg or ()),
        nspawn_env=env,
    )
    for node in lab.nodes:
        out.info(f"  {node.name}  {node.ip}")
        out.event("lab_node", lab=name, node=node.name, ip=node.ip)
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in lab.timings.items())
    out.summary(f"lab {name} up: {len(lab.nodes)} node(s) on {lab.record.subnet} ({timings}); `kubeplay lab ssh node0`")


@lab_app.command("down")
def down(
    ctx: typer.Context,
    name: NameOpt = None,
    state_dir: DirOpt = None,
    all_labs: Annotated[
        bool, typer.Option("--all", help="Every lab under the state dir (e.g. left by killed tests).")
    ] = False,
) -> None:
    """Stop the lab's nodes and remove exactly what `lab up` created."""
    from kubeplay.lab import record
    from kubeplay.lab.nodes import Lab

    labs = (
        [Lab.load(r.name, state_dir) for r in record.list_labs(state_dir or record.default_state_root())]
        if all_labs
        else [_load(name, state_dir)]
    )
    removed = [item for lab in labs for item in lab.down()]
    names = ", ".join(lab.name for lab in labs) or "no lab"
    command_output(ctx).summary(f"{names} down: removed {len(removed)} recorded item(s)")


@lab_app.command("status")
def status(ctx: typer.Context, state_dir: DirOpt = None) -> None:
    """List labs with their nodes, addresses and whether each node is running."""
    from kubeplay.lab import machines, network, record

    out = command_output(ctx)
    labs = record.list_labs(state_dir or record.default_state_root())
    table = Table(("lab", "node", "ip", "pid", "state", "netns"))
    for rec in labs:
        procs = {r.name: r for r in rec.resources if r.kind == "process"}
        for node in rec.nodes:
            proc = procs.get(node.machine)
            alive = proc is not None and proc.pid is not None and machines.is_running(proc.pid, proc.start_time or 0)
            state = "running" if alive else "stopped"
            if not network.netns_exists(node.netns):
                state += ", netns missing"
            pid = str(proc.pid) if proc and proc.pid else "-"
            table.add(rec.name, node.name, node.ip, pid, state, node.netns)
    if labs:
        out.table(table)
    out.summary(f"{len(labs)} lab(s)")


@lab_app.command("ssh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh_cmd(
    node: Annotated[str, typer.Argument(help="Node name, e.g. node0.")],
    command: Annotated[list[str] | None, typer.Argument(help="Command to run (after --); a shell if omitted.")] = None,
    name: NameOpt = None,
    state_dir: DirOpt = None,
) -> None:
    """Run a command on a node as root (or open a shell), over ssh from the lab side."""
    target = _load(name, state_dir).node(node)
    # Like ssh itself: the words are joined with spaces and the remote shell parses them.
    argv = target.ssh_argv(" ".join(command) if command else None, tty=not command and os.isatty(0))
    raise typer.Exit(subprocess.call(argv))  # interactive: no timeout on purpose, the user ends it


@lab_app.command("cp")
def cp(
    ctx: typer.Context,
    src: Annotated[Path, typer.Argument(help="Host file or directory.", exists=True)],
    dest: Annotated[str, typer.Argument(help="NODE:/absolute/path inside the node.")],
    name: NameOpt = None,
    state_dir: DirOpt = None,
) -> None:
    """Copy a host file or directory into a node (written straight into its root directory)."""
    node_name, sep, path = dest.partition(":")
    if not sep or not path:
        raise BadInput(f"destination {dest!r} is not NODE:/path", hint="e.g. node0:/root/bundle.tar.zst")
    written = _load(name, state_dir).node(node_name).copy_in(src, path)
    command_output(ctx).summary(f"copied {src} to {node_name}:{path} ({written})")


@lab_app.command("power-off")
def power_off(
    ctx: typer.Context,
    node: NodeArg,
    cut: Annotated[
        bool, typer.Option("--cut", help="Kill every process in the node at once, mid-write, like a power cut.")
    ] = False,
    name: NameOpt = None,
    state_dir: DirOpt = None,
) -> None:
    """Switch a node off (a clean halt, or with --cut a power cut); its disk stays for `lab power-on`."""
    lab = _load(name, state_dir)
    lab.power_off(node, cut=cut)
    command_output(ctx).summary(f"lab {lab.name}: {node} powered off ({'power cut' if cut else 'clean halt'})")


@lab_app.command("power-on")
def power_on(
    ctx: typer.Context,
    node: NodeArg,
    name: NameOpt = None,
    state_dir: DirOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for sshd.")] = BOOT_TIMEOUT,
) -> None:
    """Boot a powered-off node again from its disk, with the lab's nspawn options; wait until sshd answers."""
    lab = _load(name, state_dir)
    lab.power_on(node, timeout=timeout)
    command_output(ctx).summary(f"lab {lab.name}: {node} powered on, ssh answers ({lab.node(node).ip})")


cache_app = typer.Typer(help="The rootfs cache that `lab up` copies nodes from.")
lab_app.add_typer(cache_app, name="cache")


@cache_app.command("prune")
def cache_prune(
    ctx: typer.Context,
    cache_dir: CacheOpt = None,
    state_dir: DirOpt = None,
    all_unused: Annotated[
        bool, typer.Option("--all", help="Also remove the most recently used entry if no lab that is up uses it.")
    ] = False,
) -> None:
    """Remove rootfs cache entries no lab that is up was made from (keeping the most recently used one)."""
    from kubeplay.lab import cache, record

    out = command_output(ctx)
    root = state_dir or record.default_state_root()
    _, unknown = cache.keys_in_use(root)
    if unknown:
        out.warn(f"lab(s) {', '.join(unknown)} recorded no rootfs key (made by an older kubeplay); not protected")
    directory = cache_dir or settings.from_environ().cache.lab
    result = cache.prune(directory, root, keep_latest=not all_unused)
    for entry in result.removed:
        out.info(f"  removed rootfs-{entry.key} ({human_bytes(entry.size)})")
        out.event("lab_cache_removed", key=entry.key, bytes=entry.size)
    for key, why in result.kept.items():
        out.info(f"  kept rootfs-{key}: {why}")
    for key, size in result.tarballs.items():
        out.info(f"  removed rootfs-{key}.tar, no longer needed next to its tree ({human_bytes(size)})")
    out.summary(f"cache {directory}: removed {len(result.removed)} entry(ies), freed {human_bytes(result.freed)}")


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
