"""Frame header codec of the multiplexed data plane (wire version 2).

A v2 session carries many streams over one long-lived TLS connection between an agent and the hub.
Every frame starts with the same 12-byte header (big endian)::

    version u8 (=2) | type u8 | flags u16 | stream_id u32 | length u32

=================  ==========  ==========================================================
type               stream      ``length`` means
=================  ==========  ==========================================================
``DATA`` 0x0       > 0         payload bytes that follow (at most :data:`MAX_DATA_PAYLOAD`)
``WINDOW_UPDATE``  > 0         credit delta in bytes; with ``RST``: the reason code (u8)
``PING`` 0x2       0           opaque u32, echoed back in the reply (flag ``ACK``)
``GO_AWAY`` 0x3    0           payload length: u32 code + UTF-8 message (<= 1024 bytes)
=================  ==========  ==========================================================

Flags: ``SYN`` opens a stream and ``ACK`` accepts it (both on ``DATA`` or ``WINDOW_UPDATE``; on
``PING``, ``ACK`` marks the reply), ``FIN`` half-closes the sender's direction, ``RST`` aborts the
stream (only on ``WINDOW_UPDATE``, alone). Bits outside these four are reserved: senders leave
them zero, receivers ignore them.

This module only encodes and decodes headers; :mod:`portway.wire.mux` holds the session state
machine that checks what a frame means for its stream. Encoders return ``bytes`` so the session can
put them straight into the list handed to ``transport.writelines``.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from portway.wire.codes import Reason
from portway.wire.errors import ProtocolError
from portway.wire.frames import Bytes

MUX_VERSION: Final = 2
HEADER: Final = struct.Struct(">BBHII")
HEADER_SIZE: Final = HEADER.size  # 12

MAX_DATA_PAYLOAD: Final = 64 * 1024
"""Largest ``DATA`` payload; a bigger ``length`` is a protocol error as soon as the header is
seen, so a receiver never buffers more than this for one frame."""
MAX_GO_AWAY_PAYLOAD: Final = 1024
"""Largest ``GO_AWAY`` payload (code + message)."""
MAX_U32: Final = 0xFFFF_FFFF


class FrameType(enum.IntEnum):
    DATA = 0x0
    WINDOW_UPDATE = 0x1
    PING = 0x2
    GO_AWAY = 0x3


class Flag(enum.IntFlag):
    SYN = 0x1
    ACK = 0x2
    FIN = 0x4
    RST = 0x8


KNOWN_FLAGS: Final = 0xF
"""Flag bits this version defines; the others are reserved and ignored on receive."""


class GoAwayCode(enum.IntEnum):
    """Why a session is being shut down (u32 at the start of a ``GO_AWAY`` payload)."""

    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2
    FLOW_CONTROL_ERROR = 3
    LIMIT = 4

    @property
    def label(self) -> str:
        """Lower-case name, as used for :attr:`ProtocolError.code`."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> GoAwayCode:
        """The code for a :attr:`ProtocolError.code` (anything else: ``PROTOCOL_ERROR``)."""
        member = cls.__members__.get(label.upper())
        return member if member is not None else cls.PROTOCOL_ERROR


RESET_LIMIT: Final = int(Reason.LIMIT)
"""Stream reset code for "refused by a limit" (SYN rate, concurrent streams)."""

_U32: Final = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Header:
    """A decoded frame header (for tests and tools; the session unpacks inline)."""

    version: int
    type: int
    flags: int
    stream_id: int
    length: int


def decode_header(data: Bytes, offset: int = 0) -> Header:
    """Unpack the 12 bytes at ``offset``; no validation beyond the size."""
    if len(data) - offset < HEADER_SIZE:
        raise ValueError(f"a frame header needs {HEADER_SIZE} bytes")
    return Header(*HEADER.unpack_from(data, offset))


def encode_header(kind: int, flags: int, stream_id: int, length: int) -> bytes:
    """The 12-byte header; ranges are checked (``struct.error`` otherwise would be cryptic)."""
    if not 0 <= stream_id <= MAX_U32 or not 0 <= length <= MAX_U32:
        raise ValueError("stream id and length must fit in a u32")
    return HEADER.pack(MUX_VERSION, kind, flags, stream_id, length)


def encode_data(stream_id: int, payload: Bytes, flags: int = 0) -> list[Bytes]:
    """Header and payload of one ``DATA`` frame, for ``writelines`` (the payload is not copied)."""
    if not stream_id:
        raise ValueError("DATA cannot travel on stream 0")
    if len(payload) > MAX_DATA_PAYLOAD:
        raise ValueError(f"DATA payload of {len(payload)} bytes exceeds {MAX_DATA_PAYLOAD}")
    head = encode_header(FrameType.DATA, flags, stream_id, len(payload))
    return [head, payload] if payload else [head]


def encode_window_update(stream_id: int, delta: int, flags: int = 0) -> bytes:
    """A ``WINDOW_UPDATE``: ``delta`` bytes of credit, plus ``SYN``/``ACK``/``FIN`` if given."""
    if not stream_id:
        raise ValueError("WINDOW_UPDATE cannot travel on stream 0")
    if flags & Flag.RST:
        raise ValueError("use encode_reset for RST")
    return encode_header(FrameType.WINDOW_UPDATE, flags, stream_id, delta)


def encode_reset(stream_id: int, code: int) -> bytes:
    """A stream reset: ``WINDOW_UPDATE`` with only ``RST`` set and the reason in ``length``."""
    if not stream_id:
        raise ValueError("RST cannot travel on stream 0")
    if not 0 <= code <= 0xFF:
        raise ValueError(f"reset code {code} does not fit in a byte")
    return HEADER.pack(MUX_VERSION, FrameType.WINDOW_UPDATE, Flag.RST, stream_id, code)


def encode_ping(opaque: int, *, ack: bool = False) -> bytes:
    """A ``PING`` (or, with ``ack``, the reply echoing the peer's ``opaque``)."""
    return encode_header(FrameType.PING, Flag.ACK if ack else 0, 0, opaque)


def encode_go_away(code: int, message: str = "") -> bytes:
    """A whole ``GO_AWAY`` frame; ``message`` is cut (at a character boundary) to fit 1 KiB."""
    if not 0 <= code <= MAX_U32:
        raise ValueError("GO_AWAY code must fit in a u32")
    text = message.encode()
    room = MAX_GO_AWAY_PAYLOAD - _U32.size
    if len(text) > room:
        text = text[:room].decode(errors="ignore").encode()
    payload = _U32.pack(code) + text
    return HEADER.pack(MUX_VERSION, FrameType.GO_AWAY, 0, 0, len(payload)) + payload


def decode_go_away(payload: Bytes) -> tuple[int, str]:
    """Code and message of a ``GO_AWAY`` payload; known codes come back as :class:`GoAwayCode`.

    Raises :class:`ProtocolError` when the payload is shorter than its code or the message is not
    UTF-8.
    """
    if len(payload) < _U32.size:
        raise ProtocolError("GO_AWAY payload is shorter than its code")
    (code,) = _U32.unpack_from(payload)
    try:
        message = bytes(payload[_U32.size :]).decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError("GO_AWAY message is not UTF-8") from exc
    try:
        return GoAwayCode(code), message
    except ValueError:
        return code, message
