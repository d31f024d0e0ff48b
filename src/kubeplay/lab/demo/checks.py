"""The demo's proofs, as pure functions: evidence gathered on a node (command output, files) in, a verdict out.

Each `check_*` returns a CheckResult whose detail says what was seen (on success) or what was wrong (on
failure), so a failed demo names the node, the thing, and the evidence without anyone opening a log.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from kubeplay.lab.demo.report import CheckResult

SOURCES = "OS packages only from the deploy node"
CA = "CA trusted"
CHRONY = "chrony tracks the deploy node"
IMAGES = "containerd pulls every image (TLS, by domain)"
FILES = "every file by URL matches its checksum"
ROUTES = "no route outside the lab subnet"
FETCHES = "access log accounts for every fetch"
LOG_CLIENTS = "only lab nodes in the access log"

_SHOWN = 4  # how many offending items a detail names before "and N more"
_URL = re.compile(r"\b([a-z][a-z0-9+.-]*://\S+)")
_LOG_LINE = re.compile(r'^(\S+) \S+ \S+ \[[^\]]*\] "(\S+) (\S+)[^"]*" (\d{3}) (\d+|-)')
_BLOB = re.compile(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})$")
_MANIFEST = re.compile(r"^/v2/(.+)/manifests/([^/]+)$")


def _some(items: Iterable[str]) -> str:
    listed = sorted(items)
    more = f" and {len(listed) - _SHOWN} more" if len(listed) > _SHOWN else ""
    return ", ".join(listed[:_SHOWN]) + more


# -- parsing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessEntry:
    """One request in nginx's combined access log."""

    client: str
    method: str
    path: str  # URL-decoded, without query
    status: int
    size: int


def parse_access_log(text: str) -> list[AccessEntry]:
    """Every parseable request line of an nginx access log (combined format)."""
    entries = []
    for line in text.splitlines():
        m = _LOG_LINE.match(line)
        if m:
            path = unquote(m.group(3).split("?", 1)[0])
            size = int(m.group(5)) if m.group(5) != "-" else 0
            entries.append(AccessEntry(m.group(1), m.group(2), path, int(m.group(4)), size))
    return entries


def fetch_keys(entries: Iterable[AccessEntry], client: str) -> set[str]:
    """What `client` fetched successfully, as keys: the path, `deb:<file>` for packages, `blob:<digest>`."""
    keys: set[str] = set()
    for e in entries:
        if e.client != client or e.method != "GET" or e.status not in (200, 206):
            continue
        keys.add(e.path)
        if e.path.endswith(".deb"):
            keys.add("deb:" + e.path.rsplit("/", 1)[-1])
        blob = _BLOB.match(e.path)
        if blob:
            keys.add("blob:" + blob.group(1))
        manifest = _MANIFEST.match(e.path)
        if manifest and manifest.group(2).startswith("sha256:"):
            keys.add("blob:" + manifest.group(2))
    return keys


def parse_dpkg_status(text: str) -> dict[str, str]:
    """{package: version} of every package dpkg has installed, from /var/lib/dpkg/status."""
    installed: dict[str, str] = {}
    for para in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in para.splitlines():
            if line[:1].isspace() or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            installed[fields["Package"]] = fields.get("Version", "")
    return installed


def parse_packages_index(text: str) -> dict[tuple[str, str], str]:
    """{(package, version): pool file name} from an apt Packages index."""
    index: dict[tuple[str, str], str] = {}
    for para in text.split("\n\n"):
        fields = dict(
            (k, v.strip()) for k, _, v in (line.partition(":") for line in para.splitlines() if not line[:1].isspace())
        )
        if "Package" in fields and "Filename" in fields:
            index[(fields["Package"], fields.get("Version", ""))] = fields["Filename"].rsplit("/", 1)[-1]
    return index


def new_packages(base: Mapping[str, str], now: Mapping[str, str]) -> dict[str, str]:
    """Packages installed (or changed version) since the base image."""
    return {name: version for name, version in now.items() if base.get(name) != version}


# -- checks ------------------------------------------------------------------------------------------


def check_package_sources(
    node: str,
    *,
    repo_url: str,
    policy: str,
    source_files: Mapping[str, str],
    installed_new: Mapping[str, str],
    repo_index: Mapping[tuple[str, str], str],
) -> CheckResult:
    """apt knows no source but `repo_url`, and every package installed since the base image is in that repo."""
    problems = []
    urls = {u.rstrip("/") for u in _URL.findall(policy)}
    foreign = {u for u in urls if not u.startswith(repo_url.rstrip("/"))}
    if foreign:
        problems.append(f"apt-cache policy lists other sources: {_some(foreign)}")
    if not urls - foreign:
        problems.append(f"apt-cache policy does not list {repo_url}")
    for name, content in source_files.items():
        declared = set(_URL.findall(content))
        if any(not u.startswith(repo_url.rstrip("/")) for u in declared):
            problems.append(f"{name} declares {_some(declared)}")
    missing = {f"{n}={v}" for n, v in installed_new.items() if (n, v) not in repo_index}
    if missing:
        problems.append(f"installed but not in the bundle repo: {_some(missing)}")
    if problems:
        return CheckResult(SOURCES, node, False, "; ".join(problems))
    return CheckResult(
        SOURCES, node, True, f"apt's only source is {repo_url}; {len(installed_new)} packages installed from it"
    )


def pem_body(pem: str) -> str:
    """The base64 body of the first certificate in a PEM text, whitespace removed."""
    m = re.search(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", pem, re.S)
    return re.sub(r"\s+", "", m.group(1)) if m else ""


def check_ca_trusted(node: str, ca_pem: str, trust_bundle: str, tls_probe: str) -> CheckResult:
    """The deploy node's CA is in the system trust bundle, and a TLS request by domain with it succeeded.

    `tls_probe` is "ok <status>" or the error the probe saw.
    """
    body = pem_body(ca_pem)
    in_bundle = bool(body) and body in re.sub(r"\s+", "", trust_bundle)
    tls_ok = tls_probe.startswith("ok")
    if in_bundle and tls_ok:
        return CheckResult(CA, node, True, f"in the system trust store; TLS GET /v2/ by domain: {tls_probe[3:]}")
    why = [] if in_bundle else ["the CA is not in /etc/ssl/certs/ca-certificates.crt"]
    if not tls_ok:
        why.append(f"TLS GET /v2/ by domain with the system trust store failed: {tls_probe}")
    return CheckResult(CA, node, False, "; ".join(why))


def check_chrony(node: str, deploy_ip: str, tracking: str, sources: str) -> CheckResult:
    """chronyc tracking names the deploy node as reference, and sources marks it selected (^*)."""
    ref = re.search(r"^Reference ID\s*:\s*(\S+)\s*\(([^)]*)\)", tracking, re.M)
    selected = [line for line in sources.splitlines() if line.startswith("^*")]
    tracks = ref is not None and ref.group(2) == deploy_ip
    chosen = any(line.split()[1] == deploy_ip for line in selected if len(line.split()) > 1)
    if tracks and chosen:
        stratum = re.search(r"^Stratum\s*:\s*(\d+)", tracking, re.M)
        return CheckResult(CHRONY, node, True, f"reference {deploy_ip}, stratum {stratum.group(1) if stratum else '?'}")
    seen = ref.group(2) if ref else "none"
    return CheckResult(
        CHRONY, node, False, f"tracking reference is {seen!r}, selected source {selected[0] if selected else 'none'}"
    )


def check_images(
    node: str, expected: Mapping[str, str], listed: Mapping[str, str], errors: Mapping[str, str]
) -> CheckResult:
    """Every expected image reference was pulled and containerd records the digest the bundle serves.

    expected/listed: {reference: digest}; errors: {reference: what ctr said} for pulls that failed.
    """
    problems = [f"{ref}: {errors[ref]}" for ref in sorted(errors)]
    for ref, digest in sorted(expected.items()):
        if ref in errors:
            continue
        got = listed.get(ref)
        if got is None:
            problems.append(f"{ref}: not in containerd's image list")
        elif got != digest:
            problems.append(f"{ref}: containerd has {got}, the bundle serves {digest}")
    if problems or not expected:
        return CheckResult(IMAGES, node, False, "; ".join(problems[:_SHOWN]) or "no images to pull")
    return CheckResult(IMAGES, node, True, f"{len(expected)} images pulled for linux/amd64, digests match")


def check_files(node: str, expected: Mapping[str, str], fetched: Mapping[str, str]) -> CheckResult:
    """Every bundled file fetched by URL on the node has the sha256 the bundle manifest records.

    fetched: {path: sha256 hex, or "error: ..."}.
    """
    bad = {p for p, sha in expected.items() if fetched.get(p) != sha}
    if bad or not expected:
        detail = "; ".join(f"{p}: {fetched.get(p, 'not fetched')}" for p in sorted(bad)[:_SHOWN])
        return CheckResult(FILES, node, False, detail or "no files to fetch")
    return CheckResult(FILES, node, True, f"{len(expected)} files, sha256 equal to the manifest")


def check_routes(
    node: str, subnet: str, routes: list[dict[str, object]], outside_lookup: tuple[int, str]
) -> CheckResult:
    """Every IPv4 route stays inside the lab subnet, there is no default route, and a route lookup for a
    documentation address (RFC 5737; no packet is sent) finds nothing."""
    lab = ipaddress.ip_network(subnet)
    outside = []
    for r in routes:
        dst = str(r.get("dst", ""))
        if dst == "default":
            outside.append(f"default via {r.get('gateway', r.get('dev', '?'))}")
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            outside.append(dst)
            continue
        if net.version == 4 and not net.subnet_of(lab):  # type: ignore[arg-type]
            outside.append(dst)
    rc, text = outside_lookup
    if rc == 0:
        outside.append(f"route lookup for an outside address succeeded: {text.strip()}")
    if outside:
        return CheckResult(ROUTES, node, False, "routes out: " + _some(outside))
    return CheckResult(ROUTES, node, True, f"{len(routes)} route(s), all inside {subnet}; outside: unreachable")


def check_fetches(node: str, expected: Mapping[str, set[str]], fetched: set[str]) -> CheckResult:
    """Every fetch the node needed (files, packages, image blobs; keys as from fetch_keys) is in the
    deploy node's access log with status 200 from this node's address."""
    missing = {kind: keys - fetched for kind, keys in expected.items() if keys - fetched}
    counts = ", ".join(f"{len(keys)} {kind}" for kind, keys in expected.items())
    if missing:
        return CheckResult(
            FETCHES,
            node,
            False,
            "not in the access log: " + "; ".join(f"{kind} {_some(keys)}" for kind, keys in missing.items()),
        )
    return CheckResult(FETCHES, node, True, f"logged: {counts}")


def check_log_clients(node: str, subnet: str, entries: Iterable[AccessEntry]) -> CheckResult:
    """Every client in the deploy node's access log is a lab address (or its own loopback)."""
    lab = ipaddress.ip_network(subnet)
    clients: dict[str, int] = {}
    for e in entries:
        clients[e.client] = clients.get(e.client, 0) + 1
    strangers = set()
    for client in clients:
        try:
            addr = ipaddress.ip_address(client)
        except ValueError:
            strangers.add(client)
            continue
        if not (addr in lab or addr.is_loopback):
            strangers.add(client)
    if strangers or not clients:
        return CheckResult(
            LOG_CLIENTS, node, False, f"clients outside the lab: {_some(strangers)}" if clients else "empty log"
        )
    total = sum(clients.values())
    return CheckResult(LOG_CLIENTS, node, True, f"{total} requests from {len(clients)} lab address(es)")
