"""Malformed input to a mux session: each protocol error queues a GO_AWAY and fails the
session for good; reserved flag bits are not errors."""

from __future__ import annotations

import pytest

from portway.wire.errors import ProtocolError
from portway.wire.flow import MAX_WINDOW
from portway.wire.mux import MuxSession
from portway.wire.mux_errors import SessionClosed
from portway.wire.mux_events import DataReceived, StreamOpened
from portway.wire.mux_frames import MAX_DATA_PAYLOAD, GoAwayCode, decode_go_away, encode_go_away

from .mux_bytes import ACK, DATA, FIN, GO_AWAY, PING, RST, SYN, WU, data, parse, raw, sent

# -- protocol errors -------------------------------------------------------------------------------

SYN1 = raw(WU, SYN, 1, 0)
FULL_WINDOW = data(1, bytes(MAX_DATA_PAYLOAD), SYN) + data(1, bytes(MAX_DATA_PAYLOAD)) * 3
PE = GoAwayCode.PROTOCOL_ERROR
FCE = GoAwayCode.FLOW_CONTROL_ERROR

SERVER_ERRORS = {
    "bad version": (b"", raw(DATA, SYN, 1, 0, version=1), PE),
    "unknown type": (b"", raw(7, 0, 0, 0), PE),
    "oversized SYN data": (b"", raw(DATA, SYN, 1, MAX_DATA_PAYLOAD + 1), PE),
    "oversized data": (SYN1, raw(DATA, 0, 1, MAX_DATA_PAYLOAD + 1), PE),
    "window exceeded": (FULL_WINDOW, data(1, b"x"), FCE),
    "credit over the max window": (SYN1, raw(WU, 0, 1, MAX_WINDOW), FCE),
    "SYN credit over the max window": (b"", raw(WU, SYN, 1, MAX_WINDOW), FCE),
    "SYN of the wrong parity": (b"", raw(WU, SYN, 2, 0), PE),
    "SYN not above the last one": (raw(WU, SYN, 5, 0), raw(WU, SYN, 3, 0), PE),
    "SYN reusing an id": (SYN1, data(1, b"x", SYN), PE),
    "SYN with ACK": (b"", raw(WU, SYN | ACK, 1, 0), PE),
    "data on a stream never opened": (SYN1, data(3, b"x"), PE),
    "data on stream 0": (b"", data(0, b"x"), PE),
    "window update on stream 0": (b"", raw(WU, 0, 0, 10), PE),
    "window update for a stream never opened": (b"", raw(WU, 0, 7, 10), PE),
    "data after FIN": (raw(WU, SYN | FIN, 1, 0), data(1, b"x"), PE),
    "second FIN": (raw(WU, SYN | FIN, 1, 0), raw(WU, FIN, 1, 0), PE),
    "RST on DATA": (SYN1, raw(DATA, RST, 1, 0), PE),
    "RST with FIN": (SYN1, raw(WU, RST | FIN, 1, 1), PE),
    "RST code over a byte": (SYN1, raw(WU, RST, 1, 256), PE),
    "RST for a stream never opened": (b"", raw(WU, RST, 9, 1), PE),
    "ACK on the peer's own stream": (SYN1, raw(WU, ACK, 1, 0), PE),
    "PING on a stream": (b"", raw(PING, 0, 1, 0), PE),
    "PING with FIN": (b"", raw(PING, FIN, 0, 0), PE),
    "GO_AWAY on a stream": (b"", raw(GO_AWAY, 0, 1, 4, bytes(4)), PE),
    "GO_AWAY too long": (b"", raw(GO_AWAY, 0, 0, 1025), PE),
    "GO_AWAY without a code": (b"", raw(GO_AWAY, 0, 0, 2, b"\x00\x00"), PE),
    "GO_AWAY not UTF-8": (b"", raw(GO_AWAY, 0, 0, 5, b"\x00\x00\x00\x00\xff"), PE),
    "SYN after the peer's GO_AWAY": (encode_go_away(0), SYN1, PE),
}


def _assert_fails_with_go_away(session: MuxSession, bad: bytes, code: GoAwayCode) -> None:
    with pytest.raises(ProtocolError) as info:
        session.receive_data(bad, 0.0)
    assert info.value.code == code.label
    frames = parse(sent(session))
    assert len(frames) == 1
    head, payload = frames[0]
    assert (head.type, head.stream_id) == (GO_AWAY, 0)
    assert decode_go_away(payload) == (code, str(info.value))


@pytest.mark.parametrize(("prelude", "bad", "code"), SERVER_ERRORS.values(), ids=SERVER_ERRORS)
def test_protocol_errors_queue_go_away(prelude: bytes, bad: bytes, code: GoAwayCode) -> None:
    server = MuxSession(client=False)
    assert not server.closed
    server.receive_data(prelude, 0.0)
    sent(server)
    _assert_fails_with_go_away(server, bad, code)


def test_frames_before_ack_and_stray_acks_on_our_streams() -> None:
    def client_with_open_stream() -> MuxSession:
        client = MuxSession(client=True)
        client.open_stream(b"x")
        sent(client)
        return client

    _assert_fails_with_go_away(client_with_open_stream(), raw(WU, 0, 1, 10), PE)  # no ACK
    _assert_fails_with_go_away(client_with_open_stream(), data(1, b"r"), PE)
    client = client_with_open_stream()
    client.receive_data(raw(WU, ACK, 1, 0), 0.0)
    _assert_fails_with_go_away(client, raw(WU, ACK, 1, 0), PE)  # a second ACK
    unsent = MuxSession(client=True)
    unsent.open_stream()  # SYN not written yet: the peer cannot know the stream
    _assert_fails_with_go_away(unsent, raw(WU, ACK, 1, 0), PE)
    _assert_fails_with_go_away(MuxSession(client=True), data(3, b"x"), PE)  # our id, never opened


def test_reserved_flag_bits_are_ignored() -> None:
    server = MuxSession(client=False)
    events = server.receive_data(data(1, b"x", SYN | 0x100) + data(1, b"y", 0x8000), 0.0)
    assert events == [StreamOpened(1, memoryview(b"x")), DataReceived(1, memoryview(b"y"))]


def test_oversized_frame_is_refused_before_its_payload_arrives() -> None:
    server = MuxSession(client=False)
    server.receive_data(SYN1, 0.0)
    with pytest.raises(ProtocolError, match="exceeds"):
        server.receive_data(raw(DATA, 0, 1, 0xFFFF_FFFF)[:12], 0.0)


def test_a_failed_session_stays_failed() -> None:
    server = MuxSession(client=False)
    server.receive_data(data(1, b"x", SYN), 0.0)
    server.send(1, b"queued data is dropped")
    with pytest.raises(ProtocolError) as info:
        server.receive_data(raw(9, 0, 0, 0), 0.0)
    assert server.closed
    assert server.error is info.value
    frames = parse(sent(server))
    assert [h.type for h, _ in frames] == [GO_AWAY]
    assert sent(server) == b""
    with pytest.raises(ProtocolError) as again:
        server.receive_data(b"", 0.0)
    assert again.value is info.value
    with pytest.raises(SessionClosed):
        server.open_stream()
    # Everything else is a no-op.
    server.send(1, b"x")
    server.send(99, b"x")
    server.end_stream(1)
    server.reset_stream(1)
    server.consumed(1, 1, 0.0)
    server.ping(0.0)
    server.go_away()
    assert server.stream_count == 0
    assert sent(server) == b""
