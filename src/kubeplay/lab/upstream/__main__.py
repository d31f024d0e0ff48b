"""Run the upstream simulator by hand: `python -m kubeplay.lab.upstream WORKDIR [--auth token|basic|none]`.

Prints a bundle.yaml `mirrors:` block and the credentials file path, then serves until Ctrl-C or SIGTERM.
With `--kubespray PATH` it also serves a simulated release of that tree (default downloads, amd64+arm64).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import yaml

from kubeplay.errors import KubeplayError
from kubeplay.lab.upstream.simulator import UpstreamSimulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubeplay.lab.upstream", description=__doc__)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--auth", choices=["token", "basic", "none"], default="token")
    parser.add_argument("--kubespray", type=Path, help="kubespray directory or release .tar.gz to simulate")
    parser.add_argument("--image", action="append", default=[], help="push REF for amd64+arm64 (repeatable)")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with UpstreamSimulator(args.workdir, registry_auth=args.auth) as sim:
            creds = sim.credentials_file(args.workdir / "credentials.yaml")
            out: dict[str, object] = {"mirrors": sim.mirrors(), "credentials_file": str(creds)}
            if args.kubespray:
                archive = sim.add_kubespray(args.kubespray)
                out["kubespray"] = {"version": f"v{archive.version}", "source": archive.url, "sha256": archive.sha256}
            for ref in args.image:
                sim.push_image(ref, ["amd64", "arm64"])
            out["faults_url"] = sim.faults_url
            sys.stdout.write(yaml.safe_dump(out, sort_keys=False))
            sys.stdout.flush()
            sys.stderr.write(f"serving; pids {sim.pids}; Ctrl-C to stop\n")
            stop.wait()
    except KubeplayError as exc:
        sys.stderr.write(f"error: {exc.message}\n" + (f"hint: {exc.hint}\n" if exc.hint else ""))
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
