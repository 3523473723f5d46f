"""Small TCP origins for end-to-end tests, in background threads on loopback.

`EchoOrigin` echoes every connection until EOF, then closes its side (so half-close is
visible). `BulkOrigin` speaks a tiny protocol: ``U`` then bytes until EOF -> replies with the
hex SHA-256 of what it read; ``D`` + 8-byte big-endian length -> sends that many pattern bytes.
"""

from __future__ import annotations

import hashlib
import socket
import socketserver
import struct
import threading
from typing import Any

CHUNK = 256 * 1024
PATTERN = hashlib.sha256(b"portway").digest() * (CHUNK // 32)


def pattern_digest(size: int) -> str:
    """SHA-256 of the first `size` bytes `BulkOrigin` sends for a ``D`` request."""
    digest = hashlib.sha256()
    full, rest = divmod(size, CHUNK)
    for _ in range(full):
        digest.update(PATTERN)
    digest.update(PATTERN[:rest])
    return digest.hexdigest()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # hundreds of concurrent dials must not overflow the backlog

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client reset (a paused or deleted tunnel) is an expected end, not a server error.
        pass


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        while data := sock.recv(CHUNK):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)


class _Bulk(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        mode = sock.recv(1)
        if mode == b"U":
            digest = hashlib.sha256()
            while data := sock.recv(CHUNK):
                digest.update(data)
            sock.sendall(digest.hexdigest().encode())
        elif mode == b"D":
            header = b""
            while len(header) < 8:
                header += sock.recv(8 - len(header))
            (size,) = struct.unpack("!Q", header)
            full, rest = divmod(size, CHUNK)
            for _ in range(full):
                sock.sendall(PATTERN)
            sock.sendall(PATTERN[:rest])
        sock.shutdown(socket.SHUT_WR)


class Origin:
    """A threaded TCP server on 127.0.0.1; use as a context manager."""

    handler: type[socketserver.BaseRequestHandler] = _Echo

    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), self.handler)
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


class EchoOrigin(Origin):
    handler = _Echo


class BulkOrigin(Origin):
    handler = _Bulk


def upload_digest(host: str, port: int, size: int, timeout: float = 120.0) -> tuple[str, str]:
    """Send `size` pattern bytes after ``U``; returns (our digest, the origin's digest)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"U")
        full, rest = divmod(size, CHUNK)
        for _ in range(full):
            sock.sendall(PATTERN)
        sock.sendall(PATTERN[:rest])
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while data := sock.recv(128):
            reply += data
    return pattern_digest(size), reply.decode()


def download_digest(host: str, port: int, size: int, timeout: float = 120.0) -> tuple[str, int]:
    """Ask for `size` bytes with ``D``; returns (digest of what arrived, how many bytes)."""
    digest = hashlib.sha256()
    received = 0
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"D" + struct.pack("!Q", size))
        while data := sock.recv(CHUNK):
            digest.update(data)
            received += len(data)
    return digest.hexdigest(), received
