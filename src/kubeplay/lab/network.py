"""The lab network: a bridge inside its own namespace, one namespace per node, no route anywhere else.

Layout (nothing is added to the host's own network namespace, so its routing table is untouched):

    netns kplab-<lab>        bridge `br0` with the lab's first address (the "lab side": ssh runs here)
      └─ veth `v-<node>`  ⇄  netns kplab-<lab>-<node>: `eth0` with the node's address, `lo`

Node namespaces get only the connected route of the lab subnet: no default route, so any address
outside the subnet fails at once with "Network is unreachable". Both veth ends are created directly
inside their target namespaces, so no interface ever appears in the host namespace, even briefly.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubeplay.errors import BadInput, LabNetworkError

NETNS_DIR = Path("/run/netns")
BRIDGE = "br0"
NODE_IFACE = "eth0"
FIRST_NODE_HOST = 10  # node i gets subnet[10 + i]; .1 is the lab side of the bridge
_IP_TIMEOUT = 30


@dataclass(frozen=True)
class AddressPlan:
    """Addresses of one lab: the bridge (lab side) and each node, all inside `subnet`."""

    subnet: ipaddress.IPv4Network
    bridge_ip: ipaddress.IPv4Address
    node_ips: tuple[ipaddress.IPv4Address, ...]


def plan_addresses(subnet: str, nodes: int) -> AddressPlan:
    """Return the address plan for `nodes` nodes in `subnet`; raise BadInput if it does not fit."""
    try:
        net = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError as exc:
        raise BadInput(f"lab subnet {subnet!r} is not an IPv4 network: {exc}", hint="use e.g. 10.213.0.0/24") from exc
    if not net.is_private or net.is_loopback or net.is_link_local:
        raise BadInput(
            f"lab subnet {net} is not a private range", hint="use a subnet inside 10/8, 172.16/12 or 192.168/16"
        )
    if nodes < 1:
        raise BadInput(f"--nodes must be at least 1, got {nodes}")
    room = net.num_addresses - 1 - FIRST_NODE_HOST  # the last address is the broadcast address
    if nodes > room:
        raise BadInput(f"lab subnet {net} has room for {max(room, 0)} nodes, {nodes} asked", hint="use a larger subnet")
    return AddressPlan(
        subnet=net,
        bridge_ip=net[1],
        node_ips=tuple(net[FIRST_NODE_HOST + i] for i in range(nodes)),
    )


def overlapping_routes(subnet: ipaddress.IPv4Network, routes: list[dict[str, object]]) -> list[str]:
    """Return the host routes (from `ip -j route show table all`) whose destination overlaps `subnet`.

    The default route is not an overlap: it is where traffic goes when nothing else matches.
    """
    found = []
    for route in routes:
        dst = str(route.get("dst", ""))
        if dst in ("", "default") or ":" in dst:
            continue
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if net.overlaps(subnet):
            found.append(f"{dst} dev {route.get('dev', '?')} table {route.get('table', 'main')}")
    return found


def host_routes() -> list[dict[str, object]]:
    """The host's IPv4 routes in every table, as `ip -j` reports them."""
    out = _ip(["-j", "-4", "route", "show", "table", "all"])
    data = json.loads(out or "[]")
    return [r for r in data if isinstance(r, dict)]


def check_subnet_free(subnet: ipaddress.IPv4Network) -> None:
    """Raise BadInput if any host route overlaps the lab subnet (it must exist only inside the lab)."""
    clashes = overlapping_routes(subnet, host_routes())
    if clashes:
        raise BadInput(
            f"lab subnet {subnet} overlaps routes on this host: {'; '.join(clashes)}",
            hint="choose another private subnet with --subnet (or KUBEPLAY_LAB_SUBNET)",
        )


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def create_netns(name: str) -> None:
    """Create network namespace `name` with `lo` up; refuse if it exists (it is not ours)."""
    if netns_exists(name):
        raise LabNetworkError(
            f"network namespace {name} already exists and is not recorded by this lab",
            hint="another lab with this name may be running; pick another --name or remove it with its own `lab down`",
        )
    _ip(["netns", "add", name])
    _ip(["-n", name, "link", "set", "lo", "up"])


def delete_netns(name: str) -> bool:
    """Delete network namespace `name` if present; return whether it existed."""
    if not netns_exists(name):
        return False
    _ip(["netns", "delete", name])
    return True


def create_bridge(netns: str, address: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network) -> None:
    """Create the lab bridge in `netns` with the lab-side address."""
    _ip(["-n", netns, "link", "add", BRIDGE, "type", "bridge"])
    _ip(["-n", netns, "addr", "add", f"{address}/{subnet.prefixlen}", "dev", BRIDGE])
    _ip(["-n", netns, "link", "set", BRIDGE, "up"])


def create_node_link(
    lab_netns: str, node_netns: str, link: str, address: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network
) -> None:
    """Create a veth pair: `link` on the bridge in `lab_netns`, `eth0` with `address` in `node_netns`."""
    _ip(["-n", lab_netns, "link", "add", link, "type", "veth", "peer", "name", NODE_IFACE, "netns", node_netns])
    _ip(["-n", lab_netns, "link", "set", link, "master", BRIDGE])
    _ip(["-n", lab_netns, "link", "set", link, "up"])
    _ip(["-n", node_netns, "addr", "add", f"{address}/{subnet.prefixlen}", "dev", NODE_IFACE])
    _ip(["-n", node_netns, "link", "set", NODE_IFACE, "up"])


def link_exists(netns: str, link: str) -> bool:
    if not netns_exists(netns):
        return False
    result = subprocess.run(
        ["ip", "-n", netns, "link", "show", "dev", link],
        capture_output=True,
        text=True,
        timeout=_IP_TIMEOUT,
        check=False,
    )
    return result.returncode == 0


def delete_link(netns: str, link: str) -> bool:
    """Delete `link` in `netns` if present; return whether it existed."""
    if not link_exists(netns, link):
        return False
    _ip(["-n", netns, "link", "delete", link])
    return True


def valid_name(name: str) -> bool:
    """Lab and node names: lowercase letters, digits and dashes, short enough for interface names."""
    return re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,11})", name) is not None


def _ip(args: list[str]) -> str:
    try:
        result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT, check=False)
    except FileNotFoundError as exc:
        raise LabNetworkError("the `ip` command is missing", hint="apt-get install iproute2") from exc
    if result.returncode != 0:
        raise LabNetworkError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result.stdout
