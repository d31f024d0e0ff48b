"""SSH into lab nodes: one ed25519 key per lab, host keys pinned in the lab's own known_hosts file.

The lab generates every node's host keys itself, so it knows them before boot and can check them
strictly (no "accept any host key"), while the user's ~/.ssh/known_hosts is never read or written.
ssh runs inside the lab's bridge namespace (`ip netns exec kplab-<lab> ssh ...`): the host has no route
to the lab subnet, and needs none.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from kubeplay.errors import LabSSHError


def generate_key(path: Path, comment: str) -> str:
    """Create an ed25519 key pair at `path` (private key 0600); return the public key line."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise LabSSHError(f"ssh-keygen failed for {path}: {result.stderr.strip()}")
    path.chmod(0o600)
    return path.with_name(path.name + ".pub").read_text(encoding="utf-8").strip()


def known_hosts_lines(entries: list[tuple[str, str, str]]) -> str:
    """known_hosts text from (ip, hostname, host public key) triples."""
    lines = []
    for ip, name, pubkey in entries:
        keytype, key = pubkey.split()[:2]
        lines.append(f"{ip},{name} {keytype} {key}")
    return "\n".join(lines) + "\n"


def ssh_options(key: Path, known_hosts: Path) -> list[str]:
    """ssh `-o` options for lab nodes: our key only, strict checking against the lab's known_hosts."""
    return [
        "-i",
        str(key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "LogLevel=ERROR",
        "-F",
        "/dev/null",
    ]


def remote_command(cmd: list[str] | str) -> str:
    """The command line the remote shell runs: a list is quoted word by word, a string is used as is."""
    return cmd if isinstance(cmd, str) else shlex.join(cmd)


def ssh_argv(netns: str, options: list[str], ip: str, cmd: list[str] | str | None, tty: bool = False) -> list[str]:
    """Full argv running ssh to root@`ip` from inside the lab namespace `netns`."""
    argv = ["ip", "netns", "exec", netns, "ssh", *options]
    if tty:
        argv.append("-t")
    argv.append(f"root@{ip}")
    if cmd is not None:
        argv += ["--", remote_command(cmd)]
    return argv
