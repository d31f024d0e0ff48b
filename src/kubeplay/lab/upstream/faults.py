"""The fault-injecting file server: the same files nginx serves, misbehaving on purpose.

Every fault path ends in `<host>/<path>`, so `<faults_url>/<fault…>/<host>` is usable as a mirror base URL.
Counters are kept per full request path (query ignored), so distinct files count separately.

  /fail/<n>/<host>/<path>        the first n requests answer 503, later ones are served normally
                                 (fail/0 serves normally: a logged pass-through)
  /cut/<k>/<host>/<path>         the first request gets its headers (full Content-Length) and k body bytes,
                                 then the connection is closed; later requests are served normally
  /cut-every/<k>/<host>/<path>   every response is cut after k body bytes (only Range resume makes progress)
  /slow/<bps>/<host>/<path>      served normally, paced to <bps> bytes per second
  /corrupt/<host>/<path>         same status, length and headers, but wrong bytes
  /status/<code>/<host>/<path>   always answers <code> (e.g. 404, 500) with a short text body
  GET /_requests                 JSON list of {method, path, range, status, sent} seen so far
  POST /_reset                   forget counters and the request list

Range (bytes=a-b, a-, -n), If-Range and HEAD work on every path that serves the body.

The same faults in front of the registry (a mirror url `<faults_url>/fault/<kind>/<n>/<upstream-host>`,
i.e. registry base faults_url and repository prefix `fault/<kind>/<n>/<host>/`):
  /v2/                                   proxied unchanged (the auth challenge comes from the registry)
  /v2/fault/<kind>/<n>/<repository>/…    proxied to /v2/<repository>/…; GETs of blobs and manifests get
                                         the fault: fail/<n>, cut/<k>, cut-every/<k>, slow/<bps>, corrupt/0,
                                         status/<code>; cut/corrupt/slow count only 200/206 answers.
                                         A kind may end in a target: -manifests, -tags (manifests by
                                         tag), -digests (manifests by digest), -blobs; e.g.
                                         fault/fail-manifests/2/… or fault/corrupt-digests/0/…
The token service grants scopes for `fault/<kind>/<n>/<repository>` as for `<repository>`.

Run: python -m kubeplay.lab.upstream.faults CONFIG.json
"""

from __future__ import annotations

import email.utils
import json
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from kubeplay.lab.upstream.fault_model import BodyFaults, Fault, corrupt, parse_fault
from kubeplay.lab.upstream.registry_proxy import proxy_registry
from kubeplay.lab.upstream.tls_http import TLSThreadingHTTPServer

CHUNK = 64 * 1024
MAX_LOG = 10000


@dataclass(frozen=True)
class FaultServerConfig:
    port: int
    cert: str
    key: str
    root: str
    registry: str  # https://127.0.0.1:P of the simulator registry
    ca: str


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(start, end inclusive) for a single byte range; None for no/ignored Range; "unsatisfiable" for 416."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    spec = header[6:].strip()
    first, _, last = spec.partition("-")
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                return "unsatisfiable"
            return (max(size - suffix, 0), size - 1) if size else "unsatisfiable"
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


class FaultState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []

    def hit(self, path: str) -> int:
        """1-based number of this request for `path`."""
        with self.lock:
            self.counts[path] = self.counts.get(path, 0) + 1
            return self.counts[path]

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            if len(self.requests) < MAX_LOG:
                self.requests.append(entry)

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.requests.clear()


class FaultHandler(BaseHTTPRequestHandler):
    server: FaultServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: with Nagle on, the body waits for the ACK of the headers
    # (up to 40 ms of delayed ACK per response). Real token services and CDNs set TCP_NODELAY.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return

    def plain(self, status: int, text: str, head: bool = False) -> int:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)
        return status

    def write_body(self, read: Callable[[int], bytes], length: int, offset: int, faults: BodyFaults) -> int:
        """Send `length` bytes from `read`, misbehaving as `faults` says; return the bytes sent."""
        sent = 0
        began = time.monotonic()
        while sent < length:
            step = min(CHUNK, length - sent)
            if faults.rate:
                step = min(step, max(faults.rate // 10, 1))
            if faults.cut_after is not None:
                step = min(step, faults.cut_after - sent)
                if step <= 0:
                    self.close_connection = True
                    self.connection.close()  # mid-body, no TLS close_notify: the client sees a truncated body
                    return sent
            data = read(step)
            if not data:
                break
            if faults.wrong_bytes:
                data = corrupt(data, offset + sent)
            self.wfile.write(data)
            sent += len(data)
            if faults.rate:
                ahead = sent / faults.rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        return sent

    def _file(self, rel: str) -> Path | None:
        root = Path(self.server.cfg.root).resolve()
        candidate = (root / rel).resolve()
        if root not in candidate.parents or not candidate.is_file():
            return None
        return candidate

    def serve_file(self, rel: str, head: bool, faults: BodyFaults) -> tuple[int, int]:
        """Serve the file at `rel` honoring Range and If-Range; return (status, body bytes sent)."""
        path = self._file(rel)
        if path is None:
            return self.plain(404, "404 Not Found\n", head), 0
        st = path.stat()
        size = st.st_size
        etag = f'"{int(st.st_mtime):x}-{size:x}"'
        wanted = parse_range(self.headers.get("Range"), size)
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range != etag:
            wanted = None
        if wanted == "unsatisfiable":
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return 416, 0
        start, end = wanted if isinstance(wanted, tuple) else (0, size - 1)
        length = end - start + 1 if size else 0
        status = 206 if isinstance(wanted, tuple) else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if faults.cut_after is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return status, 0
        with path.open("rb") as fh:
            fh.seek(start)
            return status, self.write_body(fh.read, length, start, faults)

    def _route(self, head: bool) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        state = self.server.state
        if path == "/_requests" and not head:
            data = json.dumps(state.requests).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if path == "/_health":
            self.plain(200, "ok\n", head)
            return
        status, sent = 0, 0
        try:
            if path == "/v2" or path.startswith("/v2/"):
                status, sent = self._registry(path, url.query, head)
            else:
                status, sent = self._files(path.lstrip("/").split("/"), path, head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            state.record(
                {
                    "method": self.command,
                    "path": path,
                    "range": self.headers.get("Range"),
                    "status": status,
                    "sent": sent,
                }
            )

    def _files(self, parts: list[str], path: str, head: bool) -> tuple[int, int]:
        try:
            fault, rest = parse_fault(parts)
        except ValueError as exc:
            return self.plain(400, f"bad fault path: {exc}\n", head), 0
        if fault is None or not rest:
            return self.plain(404, "unknown fault path; see kubeplay.lab.upstream.faults\n", head), 0
        nth = self.server.state.hit(path)
        if fault.kind == "status":
            return self.plain(fault.number, f"{fault.number} (injected)\n", head), 0
        if fault.kind == "fail" and nth <= fault.number:
            return self.plain(503, "503 Service Unavailable (injected)\n", head), 0
        return self.serve_file("/".join(rest), head, fault.body_faults(nth))

    def _registry(self, path: str, query: str, head: bool) -> tuple[int, int]:
        parts = path.split("/")  # ["", "v2", "fault", kind, param, <upstream repository…>, "blobs"|…, ref]
        fault: Fault | None = None
        upstream_path = path
        if len(parts) > 5 and parts[2] == "fault":
            try:
                fault, rest = parse_fault(parts[3:], registry=True)
            except ValueError as exc:
                return self.plain(400, f"bad fault path: {exc}\n", head), 0
            if fault is None:
                return self.plain(404, "unknown registry fault; see kubeplay.lab.upstream.faults\n", head), 0
            upstream_path = "/v2/" + "/".join(rest)
        content = self.command == "GET" and fault is not None and fault.applies_to(upstream_path)
        if fault is not None and content:
            if fault.kind == "status":
                return self.plain(fault.number, f"{fault.number} (injected)\n", head), 0
            if fault.kind == "fail" and self.server.state.hit(path) <= fault.number:
                return self.plain(503, "503 Service Unavailable (injected)\n", head), 0
        prefix = path[: len(path) - len(upstream_path) + len("/v2/")] if fault is not None else "/v2/"
        target = upstream_path + (f"?{query}" if query else "")
        return proxy_registry(self, target, prefix, fault if content else None)

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_POST(self) -> None:
        if urllib.parse.urlsplit(self.path).path == "/_reset":
            self.server.state.reset()
            self.plain(200, "reset\n")
        else:
            self._route(head=False)

    def do_PUT(self) -> None:
        self._route(head=False)

    def do_PATCH(self) -> None:
        self._route(head=False)

    def do_DELETE(self) -> None:
        self._route(head=False)


class FaultServer(TLSThreadingHTTPServer):
    def __init__(self, cfg: FaultServerConfig) -> None:
        super().__init__(cfg.port, FaultHandler, cfg.cert, cfg.key)
        self.cfg = cfg
        self.state = FaultState()


def main(argv: list[str]) -> int:
    cfg = FaultServerConfig(**json.loads(Path(argv[1]).read_text()))
    os.umask(0o077)
    with FaultServer(cfg) as server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
