"""Preface and message frames.

Every connection an agent opens to the hub's agent port starts with the 10-byte preface
``MAGIC + u16 version``; in version 2 the session's own frames follow (:mod:`portway.wire.mux`).
Messages (:mod:`portway.wire.messages`) travel as frames ``[u32 payload length][u8 type][payload]``
(big endian): on a session's control stream, and at the start of an assigned stream until its
answer, after which the stream carries plain bytes (or datagrams, :mod:`portway.wire.datagram`).
A version 1 peer gets the hub's frozen ``refused`` frame in this format right after its preface.

The preface itself is read by the hub's agent port (:mod:`portway.net.agent_port`) before any
frame. The frame reader is pull-based, like h11's ``next_event``: :meth:`FrameReader.next_frame`
parses exactly one frame per call and never looks past it, so a caller that has just pulled the
frame after which the byte format changes gets every later byte untouched from
:meth:`FrameReader.take_rest`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from portway.wire.errors import ProtocolError

MAGIC = b"\x89PWY\r\n\x1a\n"
"""PNG-style: the high byte catches 7-bit paths, CR LF catches newline rewriting, and a stray HTTP
request or TLS ClientHello on the agent port fails on its first byte."""
_VERSION = struct.Struct(">H")
PREFACE_SIZE = len(MAGIC) + _VERSION.size
HEADER = struct.Struct(">IB")
HEADER_SIZE = HEADER.size

MAX_HELLO_PAYLOAD = 16 * 1024
"""Limit before the peer is authenticated: a hello is small, so an anonymous client can make the
hub hold at most this much."""
MAX_CONTROL_PAYLOAD = 4 * 1024 * 1024
"""Limit on an authenticated control session: room for a desired state of thousands of tunnels."""

Bytes = bytes | bytearray | memoryview


def encode_preface(version: int) -> bytes:
    """The first bytes an agent writes on every agent-port connection (control or data).

    Called by the agent right after the TCP/TLS connection is up; the hello frame follows at once,
    without waiting for a reply.
    """
    return MAGIC + _VERSION.pack(version)


def encode_frame(kind: int, payload: Bytes) -> bytes:
    """One frame: 5-byte header and payload. Called by :func:`~portway.wire.messages.encode`."""
    if not 0 <= kind <= 0xFF:
        raise ValueError(f"frame type {kind} does not fit in a byte")
    if len(payload) > 0xFFFFFFFF:
        raise ValueError("frame payload does not fit a u32 length")
    return HEADER.pack(len(payload), kind) + payload


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: its type byte and its payload (not yet interpreted)."""

    kind: int
    payload: bytes


class FrameReader:
    """Sans-IO decoder for the message frames of one stream.

    Fed by a protocol's ``data_received`` (:meth:`feed`); the owner pulls frames with
    :meth:`next_frame` and, once it has pulled the last frame before the format changes, takes the
    remaining bytes with :meth:`take_rest`. ``max_payload`` may be raised once the peer is
    authenticated. An oversized frame is refused as soon as its header is visible, before its
    payload is buffered.
    """

    def __init__(self, *, max_payload: int = MAX_HELLO_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet consumed; the owner pauses reading when this grows too large."""
        return len(self._buf)

    def feed(self, data: Bytes) -> None:
        """Append received bytes. Call :meth:`next_frame` until it returns ``None`` afterwards."""
        self._buf += data

    def next_frame(self) -> Frame | None:
        """Parse and remove one frame, or return ``None`` until more bytes are fed.

        Raises :class:`ProtocolError` on bad input; the reader then stays broken.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except ProtocolError as exc:
            self._error = exc
            raise

    def _next(self) -> Frame | None:
        buf = self._buf
        if len(buf) < HEADER_SIZE:
            return None
        length, kind = HEADER.unpack_from(buf)
        if length > self.max_payload:
            raise ProtocolError(
                f"frame of {length} bytes exceeds the limit of {self.max_payload}",
                code="frame_too_large",
            )
        end = HEADER_SIZE + length
        if len(buf) < end:
            return None
        payload = bytes(buf[HEADER_SIZE:end])
        # bytearray keeps a start offset, so deleting a prefix does not move the rest.
        del buf[:end]
        return Frame(kind, payload)

    def take_rest(self) -> bytes:
        """Remove and return every unparsed byte.

        Called once, after pulling the frame that switches the connection to stream or datagram
        framing; the caller hands these bytes to the stream decoder before any new data.
        """
        rest = bytes(self._buf)
        self._buf.clear()
        return rest
