"""The multiplexer's frames (`wire.mux_frames`): their byte layouts, pinned and as
docs/protocol.md shows them, round trips, and what the encoders refuse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.wire.codes import Reason
from portway.wire.errors import ProtocolError
from portway.wire.mux import MuxSession
from portway.wire.mux_frames import (
    HEADER_SIZE,
    MAX_DATA_PAYLOAD,
    FrameType,
    GoAwayCode,
    Header,
    decode_go_away,
    decode_header,
    encode_data,
    encode_go_away,
    encode_header,
    encode_ping,
    encode_reset,
    encode_window_update,
)

from .mux_bytes import ACK, DATA, FIN, GO_AWAY, RST, SYN, sent

# -- byte layouts ---------------------------------------------------------------------------------


def test_header_layouts_are_pinned() -> None:
    assert HEADER_SIZE == 12
    assert b"".join(encode_data(1, b"hi", SYN)) == bytes.fromhex(
        "02 00 0001 00000001 00000002 6869"
    )
    assert b"".join(encode_data(5, b"", FIN)) == bytes.fromhex("02 00 0004 00000005 00000000")
    assert encode_window_update(2, 0x40000, ACK) == bytes.fromhex("02 01 0002 00000002 00040000")
    assert encode_reset(3, Reason.TARGET_REFUSED) == bytes.fromhex("02 01 0008 00000003 00000002")
    assert encode_ping(0xDEADBEEF) == bytes.fromhex("02 02 0000 00000000 deadbeef")
    assert encode_ping(7, ack=True) == bytes.fromhex("02 02 0002 00000000 00000007")
    assert encode_go_away(GoAwayCode.PROTOCOL_ERROR, "bad") == bytes.fromhex(
        "02 03 0000 00000000 00000007 00000001 626164"
    )


def test_protocol_doc_examples() -> None:
    """The examples of docs/protocol.md, section 11."""
    assert b"".join(encode_data(1, b"abc", SYN)) == bytes.fromhex(
        "02 00 00 01  00 00 00 01  00 00 00 03  61 62 63"
    )
    assert encode_window_update(2, 262144) == bytes.fromhex("02 01 00 00  00 00 00 02  00 04 00 00")
    assert encode_reset(3, Reason.PAUSED) == bytes.fromhex("02 01 00 08  00 00 00 03  00 00 00 06")
    assert encode_ping(7) == bytes.fromhex("02 02 00 00  00 00 00 00  00 00 00 07")
    assert encode_ping(7, ack=True) == bytes.fromhex("02 02 00 02  00 00 00 00  00 00 00 07")
    assert (
        encode_go_away(GoAwayCode.PROTOCOL_ERROR, "bad frame")
        == bytes.fromhex("02 03 00 00  00 00 00 00  00 00 00 0D  00 00 00 01") + b"bad frame"
    )


def test_session_output_is_byte_exact() -> None:
    client = MuxSession(client=True)
    server = MuxSession(client=False)
    assert client.open_stream(b"hi") == 1
    syn = sent(client)
    assert syn == bytes.fromhex("02 00 0001 00000001 00000002 6869")  # data rides on the SYN
    server.receive_data(syn, 0.0)
    assert sent(server) == bytes.fromhex("02 01 0002 00000001 00000000")  # the ACK
    assert server.open_stream() == 2  # the hub's ids are even
    server.end_stream(2)
    assert sent(server) == bytes.fromhex("02 01 0005 00000002 00000000")  # SYN|FIN, no data
    client.ping(0.0)
    assert sent(client) == bytes.fromhex("02 02 0000 00000000 00000000")
    client.reset_stream(1, Reason.CLOSED)
    assert sent(client) == bytes.fromhex("02 01 0008 00000001 00000007")


@given(
    st.sampled_from(FrameType),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF_FFFF),
    st.integers(0, 0xFFFF_FFFF),
)
def test_header_round_trip(kind: FrameType, flags: int, sid: int, length: int) -> None:
    assert decode_header(encode_header(kind, flags, sid, length)) == Header(
        2, kind, flags, sid, length
    )


@given(st.sampled_from(GoAwayCode), st.text(max_size=600))
def test_go_away_round_trip_cuts_long_messages_at_a_character(code: GoAwayCode, text: str) -> None:
    frame = encode_go_away(code, text)
    head = decode_header(frame)
    assert (head.type, head.stream_id, head.length) == (GO_AWAY, 0, len(frame) - HEADER_SIZE)
    assert head.length <= 1024
    got_code, message = decode_go_away(frame[HEADER_SIZE:])
    assert got_code is code
    assert text.startswith(message)
    if len(text.encode()) <= 1020:
        assert message == text


def test_go_away_decoding() -> None:
    assert decode_go_away(b"\x00\x00\x00\x63bye") == (99, "bye")  # unknown codes stay ints
    with pytest.raises(ProtocolError, match="shorter"):
        decode_go_away(b"\x00\x01")
    with pytest.raises(ProtocolError, match="UTF-8"):
        decode_go_away(b"\x00\x00\x00\x00\xff")


def test_encoders_refuse_what_cannot_be_sent() -> None:
    with pytest.raises(ValueError, match="stream 0"):
        encode_data(0, b"x")
    with pytest.raises(ValueError, match="exceeds"):
        encode_data(1, bytes(MAX_DATA_PAYLOAD + 1))
    with pytest.raises(ValueError, match="byte"):
        encode_reset(1, 256)
    with pytest.raises(ValueError, match="encode_reset"):
        encode_window_update(1, 0, RST)
    with pytest.raises(ValueError, match="u32"):
        encode_header(DATA, 0, 1, 1 << 32)
