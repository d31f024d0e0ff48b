"""Who is listening on a TCP port: /proc/net/tcp{,6} for the socket, /proc/*/fd for the process holding it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"


@dataclass(frozen=True)
class Listener:
    port: int
    address: str
    inode: int


@dataclass(frozen=True)
class Holder:
    pid: int
    name: str
    cmdline: str

    def describe(self) -> str:
        return f"{self.name} (pid {self.pid}: {self.cmdline})" if self.cmdline else f"{self.name} (pid {self.pid})"


def _hex_address(raw: str) -> str:
    host, _, port = raw.partition(":")
    if len(host) == 8:
        octets = bytes.fromhex(host)[::-1]
        return ".".join(str(b) for b in octets) + f":{int(port, 16)}"
    words = [bytes.fromhex(host[i : i + 8])[::-1].hex() for i in range(0, 32, 8)]
    groups = "".join(words)
    return "[" + ":".join(groups[i : i + 4] for i in range(0, 32, 4)) + f"]:{int(port, 16)}"


def parse_proc_net_tcp(text: str) -> list[Listener]:
    """Listening sockets in the format of /proc/net/tcp or /proc/net/tcp6."""
    found: list[Listener] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != LISTEN:
            continue
        port = int(fields[1].rsplit(":", 1)[1], 16)
        found.append(Listener(port=port, address=_hex_address(fields[1]), inode=int(fields[9])))
    return found


def listeners(proc: Path = Path("/proc")) -> list[Listener]:
    out: list[Listener] = []
    for name in ("tcp", "tcp6"):
        path = proc / "net" / name
        if path.exists():
            out.extend(parse_proc_net_tcp(path.read_text()))
    return out


def socket_holders(inodes: set[int], proc: Path = Path("/proc")) -> dict[int, Holder]:
    """inode -> the first process found with that socket open (scans /proc/*/fd; needs root for others')."""
    wanted = {f"socket:[{i}]": i for i in inodes}
    found: dict[int, Holder] = {}
    for entry in proc.iterdir():
        if len(found) == len(wanted):
            break
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(entry / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(entry / "fd" / fd)
            except OSError:
                continue
            inode = wanted.get(target)
            if inode is not None and inode not in found:
                found[inode] = _holder(entry)
    return found


def _holder(entry: Path) -> Holder:
    try:
        name = (entry / "comm").read_text().strip()
    except OSError:
        name = "?"
    try:
        cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = ""
    return Holder(pid=int(entry.name), name=name, cmdline=cmd[:200])


def ports_in_use(ports: list[int], proc: Path = Path("/proc")) -> dict[int, list[tuple[Listener, Holder | None]]]:
    """For each of `ports` that something listens on: the listeners and the process holding each."""
    hits = [lst for lst in listeners(proc) if lst.port in ports]
    holders = socket_holders({h.inode for h in hits}, proc) if hits else {}
    out: dict[int, list[tuple[Listener, Holder | None]]] = {}
    for lst in hits:
        out.setdefault(lst.port, []).append((lst, holders.get(lst.inode)))
    return out
