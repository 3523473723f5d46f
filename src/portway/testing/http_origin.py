"""A real HTTP/1.1 origin for edge tests, in a background thread on loopback.

Routes: any path answers JSON describing the request (method, target with query, headers,
body SHA-256 and size, read streaming; chunked bodies decoded); `/download/<n>` streams n
pattern bytes (chunked when the query says `chunked=1`); `/ws` is a WebSocket echo (text and
binary frames, close answered). Use `with HttpOrigin() as origin:` then `origin.port`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from portway.net.tls import ensure_hub_certificates, server_context
from portway.testing.origins import CHUNK, PATTERN, Origin

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> tuple[str, int]:
        digest, size = hashlib.sha256(), 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                length = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if length == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = length
                while left:
                    data = self.rfile.read(min(left, CHUNK))
                    digest.update(data)
                    size += len(data)
                    left -= len(data)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            if left and self.headers.get("Expect", "").lower() == "100-continue":
                pass  # http.server already answered 100 Continue (handle_expect_100)
            while left:
                data = self.rfile.read(min(left, CHUNK))
                if not data:
                    break
                digest.update(data)
                size += len(data)
                left -= len(data)
        return digest.hexdigest(), size

    def _any(self) -> None:
        if self.path.startswith("/ws"):
            self._websocket()
            return
        if self.path.startswith("/download/"):
            self._download()
            return
        sha, size = self._body()
        body = json.dumps({
            "method": self.command, "target": self.path, "headers": dict(self.headers.items()),
            "sha256": sha, "size": size,
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _any

    def _download(self) -> None:
        self._body()
        size = int(self.path.split("/")[2].split("?")[0])
        chunked = "chunked=1" in self.path
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        left = size
        while left:
            piece = PATTERN[: min(left, CHUNK)]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            left -= len(piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _websocket(self) -> None:
        key = self.headers.get("Sec-WebSocket-Key", "").encode()
        accept = base64.b64encode(
            hashlib.sha1(key + WS_GUID, usedforsecurity=False).digest()
        ).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        sock: socket.socket = self.connection
        while (frame := read_frame(self.rfile.read)) is not None:
            opcode, payload = frame
            sock.sendall(encode_frame(opcode, payload, mask=False))
            if opcode == 8:
                break
        self.close_connection = True


def encode_frame(opcode: int, payload: bytes, *, mask: bool) -> bytes:
    """One unfragmented WebSocket frame (clients mask, servers do not)."""
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frame(read: Any) -> tuple[int, bytes] | None:
    """Read one WebSocket frame with `read(n)`; None at EOF."""
    head = read(2)
    if len(head) < 2:
        return None
    opcode, n = head[0] & 0x0F, head[1] & 0x7F
    if n == 126:
        n = struct.unpack(">H", read(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", read(8))[0]
    key = read(4) if head[1] & 0x80 else b""
    payload = read(n)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return opcode, payload


class HttpOrigin(Origin):
    handler = _Handler


class HttpsOrigin(HttpOrigin):
    """`HttpOrigin` over TLS, with a certificate from a throw-away CA made in `directory`
    (so agents do not trust it unless told not to verify)."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        certs = ensure_hub_certificates(directory)
        context = server_context(certs.cert, certs.key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
