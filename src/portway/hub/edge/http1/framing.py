"""Writing heads and framing bodies for `http1`'s connections; no parsing (llhttp does that)."""

from __future__ import annotations

import http

from portway.hub.edge.http1.events import Headers, LocalProtocolError


def header(headers: Headers, name: bytes) -> bytes | None:
    """The first value of header `name` (lower case), or None."""
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def connection_has(headers: Headers, token: bytes) -> bool:
    """Whether any `Connection` header lists `token` (lower case)."""
    return any(
        token in (t.strip() for t in v.lower().split(b","))
        for n, v in headers
        if n.lower() == b"connection"
    )


def head_bytes(first_line: bytes, headers: Headers) -> bytes:
    """A message head: `first_line` (with its CRLF), the headers, the empty line. A name or
    value that could split the head (CR, LF, a colon in a name) is refused."""
    parts = [first_line]
    for name, value in headers:
        if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name or b":" in name:
            raise LocalProtocolError(f"illegal header {name!r}")
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


class Framer:
    """How a body this side sends is delimited; `wrap()` frames one piece of it."""

    __slots__ = ("left", "mode")

    def __init__(self, mode: str, length: int = 0) -> None:
        self.mode = mode  # "none", "length", "chunked" or "close"
        self.left = length

    def wrap(self, data: bytes) -> bytes:
        if not data or self.mode == "none":
            return b""
        if self.mode == "chunked":
            return b"%x\r\n%b\r\n" % (len(data), data)
        if self.mode == "length":
            self.left -= len(data)
            if self.left < 0:
                raise LocalProtocolError("more body than its Content-Length")
        return data

    def end(self) -> bytes:
        if self.mode == "chunked":
            return b"0\r\n\r\n"
        if self.mode == "length" and self.left:
            raise LocalProtocolError("less body than its Content-Length")
        return b""


def content_length(headers: Headers) -> int | None:
    value = header(headers, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise LocalProtocolError("bad Content-Length") from None


def status_line(status: int, reason: bytes) -> bytes:
    if not reason:
        try:
            reason = http.HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
    return b"HTTP/1.1 %d %b\r\n" % (status, reason)
