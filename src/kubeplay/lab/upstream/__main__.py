"""Run the upstream simulator by hand: `python -m kubeplay.lab.upstream WORKDIR --kubespray PATH`.

With `--kubespray PATH` (a kubespray directory or release .tar.gz) or `--example-tree` (the small tree
built into kubeplay), it serves everything `kubeplay build` plans for that tree and `--arch` (default
amd64): every file, every image, and the release itself re-checksummed to match. It prints a complete
bundle.yaml on stdout (also written to WORKDIR/bundle.yaml) and, on stderr, the commands that build
from it and the one that stops it. Without a tree it serves an empty registry and file server and
prints only their `mirrors:` and `credentials_file:`. It serves until Ctrl-C or SIGTERM, then stops
every process it started, by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import yaml

from kubeplay.catalog.examples import example_tree_path
from kubeplay.config.bundle import SUPPORTED_ARCHES, BundleSpec
from kubeplay.console import Output
from kubeplay.errors import BadInput, KubeplayError
from kubeplay.lab.upstream.process import STOP_TIMEOUT
from kubeplay.lab.upstream.release import ServedRelease, serve_release
from kubeplay.lab.upstream.simulator import UpstreamSimulator
from kubeplay.state import atomic_write

INTERRUPTED = 130


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m kubeplay.lab.upstream",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("workdir", type=Path, help="where the simulator keeps its files (created)")
    tree = parser.add_mutually_exclusive_group()
    tree.add_argument("--kubespray", type=Path, help="kubespray directory or release .tar.gz to simulate")
    tree.add_argument("--example-tree", action="store_true", help="simulate kubeplay's small built-in tree")
    parser.add_argument(
        "--arch",
        action="append",
        choices=SUPPORTED_ARCHES,
        help="plan and serve files and images for this arch (repeatable; default amd64)",
    )
    parser.add_argument("--auth", choices=["token", "basic", "none"], default="token")
    parser.add_argument("--image", action="append", default=[], help="also push REF for the arches (repeatable)")
    return parser.parse_args(argv)


def kubeplay_command() -> str:
    """How to run the kubeplay this Python has: its console script beside the interpreter, else `-m`."""
    script = Path(sys.executable).with_name("kubeplay")
    if script.is_file() and os.access(script, os.X_OK):
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m kubeplay"


def build_commands(workdir: Path, spec_path: Path) -> list[str]:
    """The commands that build and check a bundle from `spec_path` (wheels come from PyPI: not simulated)."""
    kubeplay = kubeplay_command()
    bundle = shlex.quote(str(workdir / "bundle"))
    spec = shlex.quote(str(spec_path))
    return [f"{kubeplay} build {spec} -o {bundle} --no-wheels", f"{kubeplay} verify {bundle}"]


def serve(args: argparse.Namespace, sim: UpstreamSimulator, out: Output, stop: threading.Event) -> None:
    """Start the simulator, serve what was asked, print bundle.yaml (stdout) and how to use and stop it.

    Raises KeyboardInterrupt when `stop` was set while starting, before anything is printed.
    """
    arches: list[str] = list(dict.fromkeys(args.arch or ["amd64"]))
    workdir: Path = args.workdir.resolve()
    if args.kubespray is not None and not args.kubespray.exists():
        raise BadInput(
            f"{args.kubespray}: no such file or directory",
            hint="--kubespray takes a kubespray directory or release .tar.gz; without one, use --example-tree",
        )
    with out.status("starting the registry, token service, nginx and fault server"):
        sim.start()
    source = example_tree_path() if args.example_tree else args.kubespray
    release: ServedRelease | None = None
    if source is not None:
        with out.status(f"planning {source.name} for {', '.join(arches)} and serving all of it"):
            release = serve_release(sim, source, arches=arches)
        if release.pinned:
            out.warn(f"{len(release.pinned)} image(s) pinned by digest only are not served: {release.pinned}")
    for ref in args.image:
        sim.push_image(ref, arches)
    creds = sim.credentials_file(workdir / "credentials.yaml")
    text: dict[str, Any]
    if release is None:
        text = {"mirrors": sim.mirrors(), "credentials_file": str(creds)}
    else:
        text = release.bundle_spec(sim.mirrors(), creds)
        BundleSpec.model_validate(text)  # what we print must load: a failure here is a kubeplay bug
    body = yaml.safe_dump(text, sort_keys=False)
    if stop.is_set():  # an interrupt whose KeyboardInterrupt was swallowed (e.g. in an at-fork hook)
        raise KeyboardInterrupt
    spec_path = workdir / "bundle.yaml"
    if release is not None:
        atomic_write(spec_path, body.encode())
    sys.stdout.write(body)
    sys.stdout.flush()
    if release is not None:
        out.mark(
            "ok",
            f"kubespray {release.version} served: {len(release.archive.files)} files, "
            f"{len(release.images)} images ({', '.join(sorted({*arches}))}); bundle.yaml written to {spec_path}",
            always=True,
        )
        out.line("build from it, in another terminal:")
        for command in build_commands(workdir, spec_path):
            out.line(f"    {command}")
    out.line(f"faults: {sim.faults_url} (see kubeplay.lab.upstream.faults)")
    out.line(f"stop: Ctrl-C here, or kill {os.getpid()} (stops its servers, pids {' '.join(map(str, sim.pids))})")


class Interruptions:
    """SIGINT/SIGTERM set `stop` and raise KeyboardInterrupt. Python drops an exception raised where it
    ignores errors (an at-fork hook, a __del__), so the flag is what `serve` and the serving wait rely on."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def handler(self, signum: int, frame: FrameType | None) -> NoReturn:
        self.stop.set()
        raise KeyboardInterrupt

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.handler)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when started ignoring it (&)
            signal.signal(signal.SIGINT, self.handler)

    @staticmethod
    def ignore() -> None:
        """From here on, a second Ctrl-C must not cut the shutdown short and leave servers behind."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def own_children() -> list[int]:
    """PIDs of this process's children (Linux /proc/<pid>/task/<tid>/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(pid) for pid in (task / "children").read_text().split()]
    return found


def stop_unregistered(timeout: float = STOP_TIMEOUT) -> list[int]:
    """Stop children a Ctrl-C caught between their fork and the simulator recording them: SIGTERM, then
    SIGKILL after `timeout`, each reaped. Every child of this process is the simulator's; returns their PIDs."""
    pids = own_children()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.02)
    return pids


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Output()
    interruptions = Interruptions()
    interruptions.install()  # SIGTERM stops it the way Ctrl-C does
    serving = False
    sim = UpstreamSimulator(args.workdir, registry_auth=args.auth)
    try:
        serve(args, sim, out, interruptions.stop)
        serving = True
        interruptions.stop.wait()
    except KubeplayError as exc:
        out.error(exc.message, exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        pass
    finally:
        interruptions.ignore()
        pids = sim.pids
        sim.stop()
        pids += stop_unregistered()
    if not serving:
        out.warn(f"interrupted while starting; stopped pids {' '.join(map(str, pids)) or '(none started)'}")
        return INTERRUPTED
    out.summary(f"simulator stopped: pids {' '.join(map(str, pids))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
