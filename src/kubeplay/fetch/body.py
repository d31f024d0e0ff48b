"""Copy one response body into an open `.part` file, hashing it, in blocks of BLOCK bytes.

Through httpx every 16 KiB TLS record costs a trip through httpcore and h11 (and the GIL handed
around among eight download threads); that, not TLS or hashing, was most of the downloader's CPU.
So a plain HTTP/1.1 body with a Content-Length, on a connection that is the socket itself (no proxy
tunnel inside TLS), is read straight from that socket with `recv_into` into one reusable buffer,
and written and hashed once per block. httpx still does everything before the body: the request,
redirects, auth, proxies, the status line and headers. Reading past h11 leaves that connection
unusable, so its response is closed afterwards (httpcore drops a connection whose body it did not
see end) rather than reused; the fast path is therefore taken only for bodies of FAST_MIN bytes or
more, where a new connection costs far less than it saves. Everything else goes through `iter_raw`.

Either way the file receives every byte that arrived before a failure (the block is flushed in a
`finally`), so a retry resumes exactly where the body stopped, and socket errors surface as the same
httpx exceptions (ReadTimeout, ReadError, RemoteProtocolError) that the retry policy already knows.
The stop event is checked after every read: on Ctrl-C the bytes held are written to the .part at once.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterable

import httpx

from kubeplay.errors import Interrupted

# Small enough that a block is decrypted into, hashed and copied into the page cache while it is still
# in the core's L2 with several transfers running; large enough that Python's per-block work stays out
# of the way (bench/files.py measures the download rate against curl's).
BLOCK = 256 << 10
FAST_MIN = 1 << 20


class BodyCopy:
    """Writes and hashes a body into `fd` block by block; `received` counts the bytes written so far."""

    def __init__(
        self,
        fd: int,
        hashers: Iterable[hashlib._Hash],
        *,
        advance: Callable[[int], None],
        stop: threading.Event,
    ) -> None:
        self.fd = fd
        self.hashers = tuple(hashers)
        self.advance = advance
        self.stop = stop
        self.received = 0
        self._buf = bytearray(BLOCK)
        self._view = memoryview(self._buf)
        self._filled = 0

    def run(self, response: httpx.Response, remaining: int | None, read_timeout: float | None) -> None:
        """Copy the body of `response`; raise httpx errors for what a retry may fix, Interrupted when stopped."""
        try:
            sock = _direct_socket(response) if remaining is not None and remaining >= FAST_MIN else None
            if sock is not None and remaining is not None:
                self._from_socket(response, sock, remaining, read_timeout)
            else:
                self._from_chunks(response.iter_raw())
        finally:
            self._flush()

    def _from_chunks(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self._take(chunk)
            if self.stop.is_set():
                raise Interrupted("download stopped")

    def _from_socket(
        self, response: httpx.Response, sock: socket.socket, remaining: int, timeout: float | None
    ) -> None:
        # h11 may already hold the first body bytes (read together with the headers): the first chunk
        # empties its buffer, every later byte of this body comes from the socket.
        chunks = response.iter_raw()
        first = next(chunks, None)
        if first is None:  # h11 saw the whole body already
            return
        self._take(first)
        remaining -= len(first)
        view = self._view
        request = response.request
        try:
            sock.settimeout(timeout)
            while remaining > 0:
                if self._filled == BLOCK:
                    self._flush()
                end = min(BLOCK, self._filled + remaining)
                n = sock.recv_into(view[self._filled : end])
                if n == 0:
                    raise httpx.RemoteProtocolError(
                        "peer closed connection without sending complete message body", request=request
                    )
                self._filled += n
                remaining -= n
                if self.stop.is_set():
                    raise Interrupted("download stopped")
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except OSError as exc:  # ssl.SSLError included
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc

    def _take(self, chunk: bytes) -> None:
        n = len(chunk)
        if self._filled + n > BLOCK:
            self._flush()
            if n >= BLOCK:
                self._write(memoryview(chunk))
                return
        self._buf[self._filled : self._filled + n] = chunk
        self._filled += n

    def _flush(self) -> None:
        if self._filled:
            self._write(self._view[: self._filled])
            self._filled = 0

    def _write(self, data: memoryview) -> None:
        done = 0
        while done < len(data):
            done += os.write(self.fd, data[done:])
        for h in self.hashers:
            h.update(data)
        self.received += len(data)
        self.advance(len(data))


def _direct_socket(response: httpx.Response) -> socket.socket | None:
    """The socket this HTTP/1.1 response's body arrives on, when reading it directly is equivalent."""
    if response.http_version != "HTTP/1.1":
        return None
    headers = response.headers
    if "transfer-encoding" in headers or "content-length" not in headers:
        return None
    stream = response.extensions.get("network_stream")
    get_info = getattr(stream, "get_extra_info", None)
    if get_info is None:
        return None
    sock: object = get_info("socket")
    if not isinstance(sock, socket.socket):
        return None
    url = response.url
    if url.scheme == "https":
        # TLS terminated in this socket for this very host; a tunnel inside a TLS proxy connection
        # (TLS in TLS) has the proxy's SSLSocket here and is read through httpx instead.
        if not isinstance(sock, ssl.SSLSocket) or sock.server_hostname != url.host:
            return None
    elif isinstance(sock, ssl.SSLSocket):
        return None
    return sock
