"""Writing heads and framing bodies for `http1`'s connections; no parsing (llhttp does that)."""

from __future__ import annotations

import http

from portway.hub.edge.http1.parts import Headers, LocalProtocolError


def header(headers: Headers, name: bytes) -> bytes | None:
    """The first value of header `name` (lower case), or None."""
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def tokens(value: bytes | None) -> set[bytes]:
    """The comma-separated tokens of a list header's value (`Connection`), lower case."""
    return {t.strip() for t in value.lower().split(b",")} - {b""} if value else set()


def head_bytes(first_line: bytes, headers: Headers) -> bytes:
    """A message head: `first_line` (with its CRLF), the headers, the empty line. A name or
    value that could split the head (CR, LF, a colon in a name) is refused."""
    lines = b"".join([b"%b: %b\r\n" % pair for pair in headers])
    # One CR and one LF per line, or a name or value holds one: counted in C, not per header.
    count = len(headers)
    if lines.count(b"\n") != count or lines.count(b"\r") != count:
        raise LocalProtocolError("illegal header: CR or LF in a name or value")
    if b":" in b"".join([name for name, _ in headers]):
        raise LocalProtocolError("illegal header: a colon in a name")
    return b"%b%b\r\n" % (first_line, lines)


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


def parse_length(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        raise LocalProtocolError("bad Content-Length") from None


def request_framer(headers: Headers) -> Framer:
    """How a request with `headers` frames its body: chunked, else its `Content-Length` (none
    is an empty body)."""
    length: bytes | None = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding" and b"chunked" in value.lower():
            return Framer("chunked")
        if lowered == b"content-length" and length is None:
            length = value
    return Framer("length", 0 if length is None else parse_length(length))


def status_line(status: int, reason: bytes) -> bytes:
    if not reason:
        try:
            reason = http.HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
    return b"HTTP/1.1 %d %b\r\n" % (status, reason)
