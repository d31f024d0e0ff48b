"""A tiny plain-HTTP server on loopback for the downloader's unit tests: Range, cuts, 503s, wrong bytes.

Paths: /ok/<name>, /cut/<k>/<name> (first request cut after k bytes), /fail/<n>/<name> (first n answer
503), /corrupt/<name>, /norange/<name> (ignores Range), /chunked/<name> (Transfer-Encoding: chunked, no
Content-Length), /stall/<k>/<name> (first request stops sending after k bytes and holds the connection
open for STALL seconds). Unknown names: 404. Counts requests per path and connections accepted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.hits: Counter[str] = Counter()
        self.ranges: list[str] = []
        self.url = ""
        self.connections = 0


STALL = 3.0


def _handler(state: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def setup(self) -> None:
            state.connections += 1
            super().setup()

        def do_GET(self) -> None:
            state.hits[self.path] += 1
            count = state.hits[self.path]
            parts = self.path.strip("/").split("/")
            kind, name = parts[0], parts[-1]
            data = state.files.get(name)
            if data is None:
                self._send(404, b"not found")
                return
            if kind == "fail" and count <= int(parts[1]):
                self._send(503, b"busy")
                return
            if kind == "corrupt":
                data = bytes(b ^ 0xFF for b in data)
            rng = self.headers.get("Range")
            start = 0
            if rng and kind != "norange":
                state.ranges.append(rng)
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self._send(416, b"")
                    return
            body = data[start:]
            if kind == "chunked":
                self._send_chunked(body)
                return
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if kind in ("cut", "stall") and count == 1:
                self.wfile.write(body[: int(parts[1])])
                self.wfile.flush()
                if kind == "stall":
                    time.sleep(STALL)
                self.close_connection = True
                return
            self.wfile.write(body)

        def _send_chunked(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 100_000):
                piece = body[i : i + 100_000]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

        def _send(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def serve(files: dict[str, bytes]) -> Iterator[FileServer]:
    state = FileServer(files)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
