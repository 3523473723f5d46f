"""Sans-IO probes for PostgreSQL (`SSLRequest`) and Redis (`PING`, then `INFO server`).

Used through `client_probes()` in `portway.probe.runner`; see protocols.py for the parser shape.
"""

from __future__ import annotations

import struct

from portway.probe.protocols import Answer, Probe, first_line, not_this
from portway.probe.results import Detection

# --- PostgreSQL ---------------------------------------------------------------------------------

SSL_REQUEST = struct.pack(">II", 8, 80877103)
"""Length 8, then the magic request code 1234.5679. Every PostgreSQL since 7.1 answers with one
byte, 'S' (TLS handshake follows on this connection) or 'N', and then waits for a startup packet,
so the probe never logs in and never leaves a "role does not exist" line in the server's log."""


def parse_postgres(data: bytes, eof: bool) -> Answer | None:
    """The reply to SSL_REQUEST: 'S', 'N', or an ErrorResponse (servers too old for SSLRequest,
    or out of connection slots)."""
    if not data:
        return None if not eof else not_this(data)
    first = data[:1]
    if first in (b"S", b"N") and len(data) == 1:
        if first == b"S":
            return Answer(Detection("postgres", detail="PostgreSQL, accepts TLS"), upgrade_tls=True)
        return Answer(Detection("postgres", detail="PostgreSQL, no TLS"))
    if first == b"E":
        return _postgres_error(data, eof)
    return not_this(data)


def _postgres_error(data: bytes, eof: bool) -> Answer | None:
    if len(data) < 5:
        return None if not eof else not_this(data)
    (length,) = struct.unpack_from(">I", data, 1)
    if not 4 < length < 4096:
        return not_this(data)
    if len(data) < 1 + length:
        return None if not eof else not_this(data)
    fields = {}
    for field in data[5 : 1 + length].split(b"\x00"):
        if field:
            fields[field[:1]] = field[1:].decode("utf-8", "replace")
    if b"M" not in fields or b"S" not in fields:
        return not_this(data)
    return Answer(Detection("postgres", detail=f"PostgreSQL, refused: {fields[b'M'][:100]}"))


POSTGRES = Probe("postgres", SSL_REQUEST, parse_postgres)

# --- Redis --------------------------------------------------------------------------------------

REDIS_REQUEST = b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"
"""PING, pipelined with INFO server for the version. RESP arrays rather than inline commands, so
a server that is not Redis sees no text line it could mistake for its own protocol."""

_REPLY_LIMIT = 64 * 1024


def _resp_reply(data: bytes, pos: int) -> tuple[bytes, bytes | None, int] | None:
    """One simple/error/integer/bulk reply at `pos`: (type byte, payload, next position).

    None when incomplete; payload None for a null bulk string. Type b"" for anything else.
    """
    end = data.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, line = data[pos : pos + 1], data[pos + 1 : end]
    if kind != b"$":
        return (kind if kind in (b"+", b"-", b":") else b""), line, end + 2
    try:
        size = int(line)
    except ValueError:
        return b"", line, end + 2
    if size < 0:
        return kind, None, end + 2
    if len(data) < end + 2 + size + 2:
        return None
    return kind, data[end + 2 : end + 2 + size], end + 4 + size


def parse_redis(data: bytes, eof: bool) -> Answer | None:  # noqa: PLR0911 - one per reply shape
    """The replies to REDIS_REQUEST: +PONG then the INFO text, or an auth error."""
    first = _resp_reply(data, 0)
    if first is None:
        if eof or len(data) > _REPLY_LIMIT or (data and data[:1] not in b"+-"):
            return not_this(data)
        return None
    kind, payload, after = first
    text = (payload or b"").decode("utf-8", "replace")
    if kind == b"-":
        word = text.split(" ", 1)[0].upper()
        if word in ("NOAUTH", "NOPERM") or (word == "ERR" and "auth" in text.lower()):
            return Answer(Detection("redis", auth_required=True, detail="Redis, password required"))
        if word == "DENIED":  # protected mode: no password set, and we are not on loopback
            return Answer(Detection("redis", detail=f"Redis, {first_line(payload or b'')[:100]}"))
        return not_this(data)
    if kind != b"+" or text != "PONG":
        return not_this(data)
    info = _resp_reply(data, after)
    if info is None and not eof and len(data) < _REPLY_LIMIT:
        return None
    version = None
    if info is not None and info[0] == b"$" and info[1] is not None:
        for line in info[1].decode("utf-8", "replace").splitlines():
            if line.startswith("redis_version:"):
                version = line.split(":", 1)[1].strip() or None
    detail = f"Redis {version}" if version else "Redis"
    return Answer(Detection("redis", version=version, detail=detail))


REDIS = Probe("redis", REDIS_REQUEST, parse_redis)
