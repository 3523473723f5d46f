"""Mux frames written by hand (any header, valid or not), and a session's output split back
into frames."""

from __future__ import annotations

from portway.wire.mux import MuxSession
from portway.wire.mux_frames import HEADER, HEADER_SIZE, Flag, FrameType, Header, decode_header

DATA, WU, PING, GO_AWAY = FrameType
SYN, ACK, FIN, RST = Flag


def raw(
    kind: int, flags: int, sid: int, length: int, payload: bytes = b"", version: int = 2
) -> bytes:
    return HEADER.pack(version, kind, flags, sid, length) + payload


def data(sid: int, payload: bytes, flags: int = 0) -> bytes:
    return raw(DATA, flags, sid, len(payload), payload)


def parse(out: bytes) -> list[tuple[Header, bytes]]:
    """Split a session's output into frames (header, payload)."""
    frames = []
    pos = 0
    while pos < len(out):
        head = decode_header(out, pos)
        size = head.length if head.type in (DATA, GO_AWAY) else 0
        frames.append((head, out[pos + HEADER_SIZE : pos + HEADER_SIZE + size]))
        pos += HEADER_SIZE + size
    assert pos == len(out)
    return frames


def sent(session: MuxSession, max_bytes: int = 256 * 1024) -> bytes:
    return b"".join(session.data_to_send(max_bytes))
