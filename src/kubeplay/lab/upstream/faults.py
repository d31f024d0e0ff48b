"""The fault-injecting file server: the same files nginx serves, misbehaving on purpose.

Every fault path ends in `<host>/<path>`, so `<faults_url>/<fault…>/<host>` is usable as a mirror base URL.
Counters are kept per full request path (query ignored), so distinct files count separately.

  /fail/<n>/<host>/<path>        the first n requests answer 503, later ones are served normally
  /cut/<k>/<host>/<path>         the first request gets its headers (full Content-Length) and k body bytes,
                                 then the connection is closed; later requests are served normally
  /cut-every/<k>/<host>/<path>   every response is cut after k body bytes (only Range resume makes progress)
  /slow/<bps>/<host>/<path>      served normally, paced to <bps> bytes per second
  /corrupt/<host>/<path>         same status, length and headers, but wrong bytes
  /status/<code>/<host>/<path>   always answers <code> (e.g. 404, 500) with a short text body
  GET /_requests                 JSON list of {method, path, range, status, sent} seen so far
  POST /_reset                   forget counters and the request list

Range (bytes=a-b, a-, -n), If-Range and HEAD work on every path that serves the body.

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
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from kubeplay.lab.upstream.tls_http import TLSThreadingHTTPServer

CHUNK = 64 * 1024
MAX_LOG = 10000


@dataclass(frozen=True)
class FaultServerConfig:
    port: int
    cert: str
    key: str
    root: str


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


def corrupt(data: bytes, offset: int, total: int) -> bytes:
    """Flip bits in a slice of the file so every full or partial body differs from the real one."""
    out = bytearray(data)
    for i in range(len(out)):
        pos = offset + i
        if pos % 997 == 0 or pos == total // 2 or pos == total - 1:
            out[i] ^= 0xFF
    return bytes(out)


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

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _plain(self, status: int, text: str, head: bool = False) -> int:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)
        return status

    def _file(self, rel: str) -> Path | None:
        root = Path(self.server.cfg.root)
        candidate = (root / rel).resolve()
        if root.resolve() not in candidate.parents or not candidate.is_file():
            return None
        return candidate

    def _serve(
        self,
        rel: str,
        *,
        head: bool,
        cut_after: int | None = None,
        rate: int | None = None,
        wrong_bytes: bool = False,
    ) -> tuple[int, int]:
        """Serve the file at `rel` honoring Range; return (status, body bytes sent)."""
        path = self._file(rel)
        if path is None:
            return self._plain(404, "404 Not Found\n", head), 0
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
        if cut_after is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return status, 0
        sent = 0
        began = time.monotonic()
        with path.open("rb") as fh:
            fh.seek(start)
            while sent < length:
                step = min(CHUNK, length - sent)
                if rate:
                    step = min(step, max(rate // 10, 1))
                if cut_after is not None:
                    step = min(step, cut_after - sent)
                    if step <= 0:
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.close()  # mid-body: the client sees a truncated response
                        return status, sent
                data = fh.read(step)
                if wrong_bytes:
                    data = corrupt(data, start + sent, size)
                self.wfile.write(data)
                sent += len(data)
                if rate:
                    ahead = sent / rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
        return status, sent

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
            self._plain(200, "ok\n", head)
            return
        parts = path.lstrip("/").split("/")
        status, sent = 0, 0
        try:
            status, sent = self._dispatch(parts, path, head)
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

    def _dispatch(self, parts: list[str], path: str, head: bool) -> tuple[int, int]:
        kind = parts[0]
        state = self.server.state
        try:
            if kind == "fail" and len(parts) > 3:
                if state.hit(path) <= int(parts[1]):
                    return self._plain(503, "503 Service Unavailable (injected)\n", head), 0
                return self._serve("/".join(parts[2:]), head=head)
            if kind in ("cut", "cut-every") and len(parts) > 3:
                nth = state.hit(path)
                cut = int(parts[1]) if kind == "cut-every" or nth == 1 else None
                return self._serve("/".join(parts[2:]), head=head, cut_after=cut)
            if kind == "slow" and len(parts) > 3:
                return self._serve("/".join(parts[2:]), head=head, rate=max(int(parts[1]), 1))
            if kind == "corrupt" and len(parts) > 2:
                return self._serve("/".join(parts[1:]), head=head, wrong_bytes=True)
            if kind == "status" and len(parts) > 3:
                code = int(parts[1])
                if not 200 <= code <= 599:
                    raise ValueError(code)
                return self._plain(code, f"{code} (injected)\n", head), 0
        except ValueError:
            return self._plain(400, "bad fault parameter\n", head), 0
        except (BrokenPipeError, ConnectionResetError):
            return 0, 0
        return self._plain(404, "unknown fault path; see kubeplay.lab.upstream.faults\n", head), 0

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_POST(self) -> None:
        if urllib.parse.urlsplit(self.path).path == "/_reset":
            self.server.state.reset()
            self._plain(200, "reset\n")
        else:
            self._plain(404, "not found\n")


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
