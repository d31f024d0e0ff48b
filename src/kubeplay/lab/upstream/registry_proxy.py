"""Forward one request from the fault server to the simulator registry, with faults on the response body."""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
from typing import TYPE_CHECKING

from kubeplay.lab.upstream.fault_model import BodyFaults, Fault

if TYPE_CHECKING:
    from kubeplay.lab.upstream.faults import FaultHandler

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade", "host"}
MAX_REQUEST_BODY = 256 * 1024 * 1024


def proxy_registry(handler: FaultHandler, target: str, prefix: str, fault: Fault | None) -> tuple[int, int]:
    """Send handler's request to the registry's `target`; stream the answer back; return (status, bytes sent).

    Body faults apply to successful (200/206) GETs of blobs and manifests only, so a 401 before the token
    does not use up a "first request" fault. `Location` headers under /v2/ keep the client under `prefix`.
    """
    registry, ca = handler.server.cfg.registry, handler.server.cfg.ca
    head = handler.command == "HEAD"
    length = int(handler.headers.get("Content-Length") or 0)
    if handler.headers.get("Transfer-Encoding") or length > MAX_REQUEST_BODY:
        return handler.plain(411, "the fault proxy needs a Content-Length request body\n", head), 0
    body = handler.rfile.read(length) if length else None
    headers: dict[str, str] = {}
    for name in dict.fromkeys(handler.headers.keys()):
        if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
            headers[name] = ", ".join(handler.headers.get_all(name) or [])  # skopeo sends Accept many times
    upstream = urllib.parse.urlsplit(registry)
    context = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection(upstream.hostname or "127.0.0.1", upstream.port, context=context, timeout=60)
    try:
        conn.request(handler.command, target, body=body, headers=headers)
        response = conn.getresponse()
        size = response.getheader("Content-Length")
        data = None if size is not None or head else response.read()
        handler.send_response(response.status)
        for name, value in response.getheaders():
            lowered = name.lower()
            if lowered in HOP_BY_HOP or lowered == "content-length":
                continue
            moved = lowered == "location" and value.startswith("/v2/")
            handler.send_header(name, prefix + value.removeprefix("/v2/") if moved else value)
        faults = BodyFaults()
        if fault is not None and response.status in (200, 206) and not head:
            faults = fault.body_faults(handler.server.state.hit("body:" + handler.path))
        total = int(size) if size is not None else len(data or b"")
        handler.send_header("Content-Length", str(total))
        if faults.cut_after is not None:
            handler.send_header("Connection", "close")
        handler.end_headers()
        if head:
            return response.status, 0
        offset = 0
        content_range = response.getheader("Content-Range") or ""
        if content_range.startswith("bytes ") and "-" in content_range:
            offset = int(content_range[6:].split("-", 1)[0])
        if data is not None:
            view = memoryview(data)
            position = 0

            def read_buffer(n: int) -> bytes:
                nonlocal position
                chunk = bytes(view[position : position + n])
                position += len(chunk)
                return chunk

            return response.status, handler.write_body(read_buffer, total, offset, faults)
        return response.status, handler.write_body(response.read, total, offset, faults)
    except (OSError, http.client.HTTPException):
        handler.close_connection = True
        return 502, 0
    finally:
        conn.close()
