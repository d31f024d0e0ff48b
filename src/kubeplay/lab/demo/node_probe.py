"""Runs ON a lab node (Python 3 stdlib only; sent over ssh as `python3 - CONFIG_JSON`): gathers the demo's
evidence on that node and prints it as one JSON object. It judges nothing; kubeplay.lab.demo.checks does.

Modes (config "mode"):
- "evidence": routes, apt sources and policy, trust store, a TLS probe by domain, chrony, file digests by URL.
- "images": containerd from the node's apt (the bundle repo), run privately, pulls every image; what it lists.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

DOCUMENTATION_ADDRESS = "192.0.2.1"  # RFC 5737 TEST-NET-1: looked up in the routing table only, never contacted
TAIL = 600


def run(argv: list[str], timeout: float = 60, env: dict[str, str] | None = None) -> tuple[int, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return proc.returncode, proc.stdout + proc.stderr


def routes() -> list[Any]:
    found: list[Any] = []
    for family in ("-4", "-6"):
        rc, out = run(["ip", "-j", family, "route", "show"])
        if rc == 0 and out.strip():
            found += json.loads(out)
    return found


def apt_sources() -> dict[str, str]:
    files = [*sorted(glob.glob("/etc/apt/sources.list.d/*")), "/etc/apt/sources.list"]
    return {p: Path(p).read_text(encoding="utf-8", errors="replace") for p in files if Path(p).is_file()}


def tls_probe(domain: str) -> str:
    try:
        with urllib.request.urlopen(f"https://{domain}/v2/", timeout=15) as resp:
            return f"ok {resp.status}"
    except Exception as exc:  # noqa: BLE001 - any failure is evidence, reported as text
        return f"{type(exc).__name__}: {exc}"


def chrony(deploy_ip: str, wait: float) -> tuple[str, str]:
    deadline = time.monotonic() + wait
    tracking = ""
    while True:
        tracking = run(["chronyc", "-n", "tracking"], timeout=10)[1]
        if f"({deploy_ip})" in tracking or time.monotonic() > deadline:
            break
        time.sleep(1)
    return tracking, run(["chronyc", "-n", "sources"], timeout=10)[1]


def file_digests(base_url: str, paths: list[str]) -> dict[str, str]:
    got: dict[str, str] = {}
    for path in paths:
        try:
            digest = hashlib.sha256()
            with urllib.request.urlopen(f"{base_url}/{path}", timeout=30) as resp:  # noqa: S310 - lab http URL
                while chunk := resp.read(1 << 16):
                    digest.update(chunk)
            got[path] = digest.hexdigest()
        except Exception as exc:  # noqa: BLE001 - any failure is evidence
            got[path] = f"error: {exc}"
    return got


def evidence(cfg: dict[str, Any]) -> dict[str, Any]:
    tracking, sources = chrony(cfg["deploy_ip"], float(cfg.get("chrony_wait", 90)))
    trust = Path("/etc/ssl/certs/ca-certificates.crt")
    return {
        "routes": routes(),
        "outside_lookup": run(["ip", "route", "get", DOCUMENTATION_ADDRESS]),
        "apt_sources": apt_sources(),
        "apt_policy": run(["apt-cache", "policy"])[1],
        "trust_bundle": trust.read_text(encoding="utf-8") if trust.is_file() else "",
        "tls_probe": tls_probe(cfg["domain"]),
        "chrony_tracking": tracking,
        "chrony_sources": sources,
        "files": file_digests(cfg["files_base"], list(cfg["files"])),
    }


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def images(cfg: dict[str, Any]) -> dict[str, Any]:
    """Install containerd from apt (only the bundle repo is configured), run it on a private socket, pull."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:  # the package must not start the distro unit (kubespray may have written its own containerd unit)
        _write(policy, "#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        install = run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "containerd"], 600, env)
    finally:
        if ours:
            policy.unlink()
    result: dict[str, Any] = {"install": [install[0], install[1][-TAIL:]], "pulls": {}, "listed": {}}
    if install[0] != 0:
        return result
    base = Path("/run/kubeplay-demo")
    sock = base / "containerd.sock"
    hosts_dir = Path("/etc/kubeplay-demo/certs.d")
    domain = cfg["domain"]
    _write(
        hosts_dir / domain / "hosts.toml",
        f'server = "https://{domain}"\n\n[host."https://{domain}"]\n  capabilities = ["pull", "resolve"]\n'
        f'  ca = "{cfg["ca_path"]}"\n',
    )
    _write(
        base / "containerd.toml",
        f'version = 2\nroot = "/var/lib/kubeplay-demo/containerd"\nstate = "{base}/state"\n'
        f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n\n[grpc]\n  address = "{sock}"\n',
    )
    unit = "kubeplay-demo-containerd"
    run(["systemctl", "stop", unit], 30)
    started = run(
        ["systemd-run", f"--unit={unit}", "--collect", "/usr/bin/containerd", "--config", str(base / "containerd.toml")]
    )
    result["containerd"] = run(["/usr/bin/containerd", "--version"])[1].strip()
    deadline = time.monotonic() + 30
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    if started[0] != 0 or not sock.exists():
        result["install"] = [1, f"containerd did not start: {started[1]}"[-TAIL:]]
        return result
    ctr = ["/usr/bin/ctr", "--address", str(sock), "-n", "k8s.io"]
    try:
        for ref in cfg["refs"]:
            pull = [*ctr, "images", "pull", "--hosts-dir", str(hosts_dir), "--platform", cfg["platform"]]
            rc, out = run([*pull, "--snapshotter", "native", ref], 180)
            result["pulls"][ref] = [rc, out[-TAIL:]]
        rc, out = run([*ctr, "images", "ls"])
        for line in out.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 3:
                result["listed"][cols[0]] = cols[2]
    finally:
        run(["systemctl", "stop", unit], 30)
    return result


def main() -> int:
    cfg = json.loads(sys.argv[1])
    mode = cfg.get("mode")
    out = evidence(cfg) if mode == "evidence" else images(cfg) if mode == "images" else {"error": f"mode {mode}"}
    sys.stdout.write(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
