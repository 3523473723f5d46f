from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.wire.codes import Reason
from portway.wire.errors import ProtocolError
from portway.wire.flow import (
    DEFAULT_BUDGET,
    INITIAL_WINDOW,
    MAX_WINDOW,
    MemoryBudget,
    ReceiveWindow,
    TokenBucket,
)
from portway.wire.mux import MuxSession
from portway.wire.mux_errors import SessionClosed, StreamStateError
from portway.wire.mux_events import (
    DataReceived,
    GoAwayReceived,
    PingAcked,
    StreamEnded,
    StreamOpened,
    StreamReset,
)
from portway.wire.mux_frames import (
    HEADER,
    HEADER_SIZE,
    MAX_DATA_PAYLOAD,
    RESET_LIMIT,
    Flag,
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
from portway.wire.mux_sending import HIGH_WATER, LOW_WATER, QUANTUM

from .muxing import Pair

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


# -- two sessions back to back ---------------------------------------------------------------------


def test_streams_both_ways_with_data_on_syn_fin_reset_and_go_away() -> None:
    pair = Pair()
    a, b = pair.a, pair.b
    s1 = a.session.open_stream(b"GET / HTTP/1.1\r\n\r\n")
    s2 = b.session.open_stream()
    b.session.send(s2, b"hub to agent")
    pair.exchange()
    assert (s1, s2) == (1, 2)
    assert b.opened == [s1]
    assert bytes(b.received[s1]) == b"GET / HTTP/1.1\r\n\r\n"
    assert a.accepted == [s1]
    assert a.opened == [s2]
    assert bytes(a.received[s2]) == b"hub to agent"

    b.session.send(s1, b"HTTP/1.1 200 OK\r\n\r\n")
    b.session.end_stream(s1)
    a.session.end_stream(s1)
    a.session.send(s2, b"agent to hub")
    pair.settle()
    assert bytes(a.received[s1]) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert bytes(b.received[s2]) == b"agent to hub"
    assert a.ended == [s1]
    assert b.ended == [s1]
    assert b.accepted == [s2]
    assert a.session.stream_ids() == [s2]  # s1 ended both ways: freed on both sides
    assert b.session.stream_ids() == [s2]

    s3 = a.session.open_stream(b"x")
    pair.settle()
    b.session.reset_stream(s3, Reason.TARGET_REFUSED)
    a.session.reset_stream(s2, Reason.GONE)
    pair.settle()
    assert a.resets == {s3: Reason.TARGET_REFUSED}
    assert b.resets == {s2: Reason.GONE}
    for peer in (a, b):
        assert peer.session.stream_count == 0
        assert peer.session.budget_reserved == 0

    s4 = a.session.open_stream(b"last")
    a.session.go_away(GoAwayCode.NORMAL, "agent stopping")
    pair.settle()
    assert b.go_aways == [GoAwayReceived(GoAwayCode.NORMAL, "agent stopping")]
    with pytest.raises(SessionClosed):
        a.session.open_stream()
    with pytest.raises(SessionClosed):
        b.session.open_stream()
    # Existing streams may finish after GO_AWAY.
    b.session.send(s4, b"reply")
    b.session.end_stream(s4)
    a.session.end_stream(s4)
    pair.settle()
    assert bytes(a.received[s4]) == b"reply"
    assert a.session.stream_count == b.session.stream_count == 0
    assert not a.session.closed and not b.session.closed


def test_syn_in_flight_when_go_away_is_sent_is_refused() -> None:
    pair = Pair()
    a, b = pair.a, pair.b
    sid = a.session.open_stream(b"late")
    b.session.go_away()
    pair.exchange()  # the SYN reaches b after b said GO_AWAY
    assert b.opened == []
    assert a.resets == {sid: Reason.CLOSED}
    assert a.go_aways == [GoAwayReceived(GoAwayCode.NORMAL, "")]
    assert a.session.stream_count == b.session.stream_count == 0


def test_open_stream_without_data_then_fin_only() -> None:
    pair = Pair()
    a, b = pair.a, pair.b
    sid = a.session.open_stream()
    a.session.end_stream(sid)
    a.session.end_stream(sid)  # idempotent
    out = sent(a.session)
    assert parse(out) == [(Header(2, WU, SYN | FIN, sid, 0), b"")]
    b.feed(out, 0.0)
    assert b.opened == [sid]
    assert b.ended == [sid]
    b.session.end_stream(sid)
    out = sent(b.session)
    assert parse(out) == [(Header(2, WU, ACK | FIN, sid, 0), b"")]  # ACK and FIN in one frame
    assert b.session.stream_count == 0
    a.feed(out, 0.0)
    assert a.ended == [sid]
    assert a.session.stream_count == 0


def test_ack_rides_on_the_first_data_frame() -> None:
    pair = Pair()
    a, b = pair.a, pair.b
    sid = a.session.open_stream(b"ping")
    pair.move(a, b)
    b.session.send(sid, b"pong")
    assert parse(sent(b.session)) == [(Header(2, DATA, ACK, sid, 4), b"pong")]


def test_payload_split_across_reads_arrives_in_pieces_and_zero_copy() -> None:
    server = MuxSession(client=False)
    server.receive_data(raw(WU, SYN, 1, 0), 0.0)
    frame = data(1, b"abcdefgh", FIN)
    first = frame[:15]
    events = server.receive_data(first, 0.0)
    assert events == [DataReceived(1, memoryview(b"abc"))]
    assert isinstance(events[0], DataReceived)
    assert events[0].data.obj is first  # a slice of what was fed, not a copy
    assert server.receive_data(frame[15:], 0.0) == [
        DataReceived(1, memoryview(b"defgh")),
        StreamEnded(1),
    ]


def test_rest_of_a_frame_for_a_stream_reset_meanwhile_is_dropped() -> None:
    server = MuxSession(client=False)
    server.receive_data(raw(WU, SYN, 1, 0) + raw(WU, SYN, 3, 0), 0.0)
    frame = data(1, b"abcdefgh", FIN)
    assert server.receive_data(frame[:14], 0.0) == [DataReceived(1, memoryview(b"ab"))]
    server.reset_stream(1)
    assert server.receive_data(frame[14:] + data(3, b"z"), 0.0) == [
        DataReceived(3, memoryview(b"z"))
    ]


def test_syn_payload_is_delivered_whole_even_when_cut() -> None:
    server = MuxSession(client=False)
    frame = data(1, b"first bytes", SYN)
    for i in range(len(frame) - 1):
        assert server.receive_data(frame[i : i + 1], 0.0) == []
    assert server.receive_data(frame[-1:], 0.0) == [StreamOpened(1, memoryview(b"first bytes"))]


def test_send_and_end_errors_and_no_ops() -> None:
    pair = Pair()
    a, b = pair.a, pair.b
    with pytest.raises(StreamStateError, match="never opened"):
        a.session.send(3, b"x")
    with pytest.raises(StreamStateError, match="never opened"):
        a.session.end_stream(2)
    sid = a.session.open_stream()
    a.session.end_stream(sid)
    with pytest.raises(StreamStateError, match="ended"):
        a.session.send(sid, b"x")
    other = a.session.open_stream(b"y")
    pair.settle()
    b.session.reset_stream(other)
    pair.settle()
    a.session.send(other, b"dropped")  # reset by the peer: silently dropped
    a.session.end_stream(other)
    a.session.reset_stream(other)
    a.session.consumed(other, 10, 0.0)
    assert a.session.send_buffered(other) == 0
    assert not a.session.has_data_to_send
    with pytest.raises(ValueError, match="byte"):
        a.session.reset_stream(sid, 300)
    with pytest.raises(ValueError, match="consumed"):
        b.session.consumed(sid, 1, 0.0)  # more than was received


def test_frames_for_a_stream_reset_locally_are_ignored() -> None:
    server = MuxSession(client=False)
    server.receive_data(data(1, b"x", SYN), 0.0)
    server.reset_stream(1)
    sent(server)
    # In flight when the RST crossed them: DATA, credit, FIN, the peer's own RST.
    late = data(1, b"late") + raw(WU, 0, 1, 100) + raw(WU, FIN, 1, 0) + raw(WU, RST, 1, 1)
    assert server.receive_data(late, 0.0) == []
    assert not server.closed
    assert server.budget_reserved == 0


def test_writable_streams_report_drained_buffers_once() -> None:
    pair = Pair()
    a = pair.a
    sid = a.session.open_stream()
    a.session.send(sid, bytes(HIGH_WATER + 1))
    assert a.session.send_buffered(sid) > HIGH_WATER  # the owner pauses its source here
    a.session.data_to_send(16 * 1024)
    assert a.session.writable_streams() == []
    a.session.data_to_send(HIGH_WATER)
    assert a.session.send_buffered(sid) <= LOW_WATER
    assert a.session.writable_streams() == [sid]
    a.session.data_to_send()
    assert a.session.writable_streams() == []


def test_send_window_opened_when_credit_returns() -> None:
    pair = Pair()
    a, b = pair.a, pair.b
    sid = a.session.open_stream()
    a.session.send(sid, bytes(INITIAL_WINDOW + 1000))
    b.slow.add(sid)
    pair.settle()
    assert a.session.send_window(sid) == 0
    assert a.session.send_buffered(sid) == 1000
    b.slow.clear()
    b.consume(pair.now)
    pair.move(b, a)
    assert a.windows_opened == [sid]
    pair.settle()
    assert len(b.received[sid]) == INITIAL_WINDOW + 1000


def test_ping_measures_rtt_and_incoming_pings_are_answered() -> None:
    pair = Pair()
    a, b = pair.a, pair.b
    a.session.ping(10.0)
    pair.move(a, b)
    pair.now = 10.25
    pair.move(b, a)  # the automatic reply
    assert a.rtts == [0.25]
    assert a.session.rtt == 0.25
    assert a.events == [PingAcked(0.25)]
    # A reply nobody asked for is ignored.
    assert a.session.receive_data(encode_ping(12345, ack=True), 11.0) == []
    assert b.session.rtt is None


def test_data_to_send_respects_max_bytes_and_control_frames_go_first() -> None:
    pair = Pair()
    a, b = pair.a, pair.b
    sid = a.session.open_stream(bytes(100_000))
    pair.move(a, b, max_bytes=1000)
    assert len(b.received[sid]) == 1000 - HEADER_SIZE
    b.session.ping(0.0)
    b.session.send(sid, b"r")
    pair.move(b, a)
    a.session.send(sid, b"more")
    frames = parse(sent(a.session, 5000))
    assert frames[0][0].type == PING  # the pong, before any data
    assert sum(len(p) for _, p in frames) <= 5000
    assert sum(HEADER_SIZE + len(p) for _, p in frames) <= 5000


# -- fairness and flow control ---------------------------------------------------------------------


def test_a_small_write_is_not_stuck_behind_a_bulk_stream() -> None:
    pair = Pair()
    a = pair.a
    bulk = a.session.open_stream()
    small = a.session.open_stream()
    pair.settle()
    a.session.send(bulk, bytes(10_000_000))
    a.session.send(small, b"s" * 100)
    frames = parse(sent(a.session))
    at = frames.index((Header(2, DATA, 0, small, 100), b"s" * 100))
    # Before the small write, the bulk stream had one turn of at most a quantum.
    assert sum(len(p) for _, p in frames[:at]) <= QUANTUM
    assert sum(len(p) for _, p in frames) > 200_000  # and then had the rest of the call


def test_a_stream_alone_uses_whole_frames() -> None:
    client = MuxSession(client=True)
    sid = client.open_stream()
    sent(client)
    client.send(sid, bytes(200_000))
    sizes = [len(p) for h, p in parse(sent(client)) if h.type == DATA]
    assert sizes[0] == MAX_DATA_PAYLOAD


def test_a_slow_stream_does_not_stop_100_mb_on_another() -> None:
    pair = Pair()
    a, b = pair.a, pair.b
    slow = a.session.open_stream(bytes(2 * INITIAL_WINDOW))
    fast = a.session.open_stream()
    b.slow.add(slow)
    total = 100 * 1024 * 1024
    chunk = bytes(range(256)) * 256  # 64 KiB
    queued = 0
    crc_out = crc_in = 0
    got = 0
    while got < total:
        while queued < total and a.session.send_buffered(fast) <= HIGH_WATER:
            a.session.send(fast, chunk)
            crc_out = zlib.crc32(chunk, crc_out)
            queued += len(chunk)
        out = b"".join(a.session.data_to_send())
        assert out, "the fast stream stalled"
        for ev in b.session.receive_data(out, pair.now):
            if isinstance(ev, DataReceived | StreamOpened) and ev.stream_id == fast:
                got += len(ev.data)
                crc_in = zlib.crc32(ev.data, crc_in)
                b.session.consumed(fast, len(ev.data), pair.now)
            elif isinstance(ev, DataReceived | StreamOpened):
                b.unconsumed[slow] += len(ev.data)
        a.feed(b"".join(b.session.data_to_send()), pair.now)
    assert got == total
    assert crc_in == crc_out
    assert b.unconsumed[slow] == INITIAL_WINDOW  # exactly one window, then it waits
    assert a.session.send_buffered(slow) == INITIAL_WINDOW


def test_window_updates_are_batched_but_never_leave_the_peer_stalled() -> None:
    server = MuxSession(client=False)
    server.receive_data(data(1, bytes(10_000), SYN), 0.0)
    sent(server)  # the ACK
    server.consumed(1, 10_000, 0.0)
    assert sent(server) == b""  # well below half a window: nothing yet
    for _ in range(3):
        server.receive_data(data(1, bytes(MAX_DATA_PAYLOAD)), 0.0)
    server.receive_data(data(1, bytes(INITIAL_WINDOW - 10_000 - 3 * MAX_DATA_PAYLOAD)), 0.0)
    # The peer has no credit left; the first byte consumed goes straight back.
    server.consumed(1, 1, 1.0)
    assert parse(sent(server)) == [(Header(2, WU, 0, 1, 10_001), b"")]


def test_receive_window_batching_threshold() -> None:
    budget = MemoryBudget(DEFAULT_BUDGET)
    window = ReceiveWindow()
    assert window.receive(100_000, 0.0)
    assert not window.consume(100_000, 0.0, 0.05, budget)  # 100 KB < half of 256 KiB
    assert window.receive(100_000, 0.0)
    assert window.consume(40_000, 0.0, 0.05, budget)  # 140 KB waiting: over half
    assert window.take_update() == 140_000
    assert window.remaining == INITIAL_WINDOW - 60_000
    assert not window.receive(INITIAL_WINDOW, 0.0)
    assert window.take_update() == 0
    # The peer nearly stalled: credit goes back before half a window is waiting.
    assert window.receive(window.remaining - 10, 0.0)
    assert window.consume(10, 0.0, 0.05, budget)


def test_auto_tuning_measures_from_the_first_byte_of_a_window() -> None:
    budget = MemoryBudget(DEFAULT_BUDGET)
    slow = ReceiveWindow()
    assert slow.receive(INITIAL_WINDOW, 0.0)
    slow.consume(INITIAL_WINDOW, 1.0, 0.05, budget)  # drained a second after it arrived
    assert slow.size == INITIAL_WINDOW
    fast = ReceiveWindow()
    assert fast.receive(INITIAL_WINDOW, 1.0)
    fast.consume(INITIAL_WINDOW, 1.1, 0.05, budget)  # within 4 RTTs
    assert fast.size == 2 * INITIAL_WINDOW
    assert fast.take_update() == 2 * INITIAL_WINDOW  # the consumed bytes plus the growth
    assert budget.reserved == INITIAL_WINDOW  # only the growth counts against the budget


def _stream_through(pair: Pair, sid: int, total: int, step: float) -> None:
    """Send ``total`` bytes on ``sid`` from a to b, advancing the clock ``step`` per round."""
    a, b = pair.a, pair.b
    a.session.send(sid, bytes(total))
    for _ in range(100_000):
        moved = pair.exchange()
        pair.now += step
        if not b.consume(pair.now) and not moved:
            break
    assert len(b.received[sid]) == total


def test_window_grows_when_consumption_is_fast_relative_to_rtt() -> None:
    pair = Pair()
    a, b = pair.a, pair.b
    sid = a.session.open_stream()
    pair.settle()
    b.session.ping(0.0)
    pair.move(b, a)
    pair.now = 0.1
    pair.move(a, b)
    assert b.session.rtt == pytest.approx(0.1)
    _stream_through(pair, sid, 40 * 1024 * 1024, step=0.001)
    assert b.session.receive_window(sid) == MAX_WINDOW
    assert b.session.budget_reserved == MAX_WINDOW - INITIAL_WINDOW


def test_window_stays_small_when_the_destination_is_slow() -> None:
    pair = Pair()
    sid = pair.a.session.open_stream()
    pair.settle()
    _stream_through(pair, sid, 4 * 1024 * 1024, step=1.0)  # a window takes seconds to drain
    assert pair.b.session.receive_window(sid) == INITIAL_WINDOW


def test_window_growth_respects_the_session_budget() -> None:
    budget = 2 * 1024 * 1024
    pair = Pair(budget=budget)
    a, b = pair.a, pair.b
    sid = a.session.open_stream()
    pair.settle()
    _stream_through(pair, sid, 16 * 1024 * 1024, step=0.0)
    # Growth stops at the budget; a new stream still gets its initial window, which the
    # budget does not count.
    assert b.session.receive_window(sid) == INITIAL_WINDOW + budget
    assert b.session.budget_reserved == budget
    other = a.session.open_stream(b"new")
    pair.settle()
    assert b.opened == [sid, other]


# -- limits ----------------------------------------------------------------------------------------


def _rsts(out: bytes) -> dict[int, int]:
    return {h.stream_id: h.length for h, _ in parse(out) if h.type == WU and h.flags & RST}


def test_syn_flood_beyond_the_rate_is_refused_but_the_session_stays_up() -> None:
    server = MuxSession(client=False, syn_rate=100)
    flood = b"".join(raw(WU, SYN | FIN, sid, 0) for sid in range(1, 300, 2))  # 150 SYNs
    events = server.receive_data(flood, 0.0)
    assert len([e for e in events if isinstance(e, StreamOpened)]) == 100
    refused = _rsts(sent(server))
    assert sorted(refused) == list(range(201, 300, 2))
    assert set(refused.values()) == {RESET_LIMIT}
    # Half a second later the bucket holds 50 more.
    more = b"".join(raw(WU, SYN, sid, 0) for sid in range(301, 421, 2))  # 60 SYNs
    events = server.receive_data(more, 0.5)
    assert len([e for e in events if isinstance(e, StreamOpened)]) == 50
    assert len(_rsts(sent(server))) == 10
    assert not server.closed
    assert server.receive_data(encode_ping(1), 0.6) == []
    assert parse(sent(server)) == [(Header(2, PING, ACK, 0, 1), b"")]


def test_streams_beyond_max_streams_are_refused_until_one_ends() -> None:
    server = MuxSession(client=False, max_streams=10)
    events = server.receive_data(b"".join(raw(WU, SYN, s, 0) for s in range(1, 31, 2)), 0.0)
    assert [e.stream_id for e in events if isinstance(e, StreamOpened)] == list(range(1, 21, 2))
    assert sorted(_rsts(sent(server))) == list(range(21, 31, 2))
    server.receive_data(raw(WU, RST, 1, Reason.RESET), 0.0)
    events = server.receive_data(raw(WU, SYN, 31, 0), 0.0)
    assert events == [StreamOpened(31, memoryview(b""))]


def test_thousands_of_idle_streams_fit_a_small_budget() -> None:
    """The budget bounds window growth only: every stream is sure of its initial window, so
    idle streams are limited by max_streams alone."""
    server = MuxSession(client=False, budget=INITIAL_WINDOW, max_streams=5000, syn_rate=1e6)
    events = server.receive_data(b"".join(raw(WU, SYN, s, 0) for s in range(1, 12_001, 2)), 0.0)
    assert len([e for e in events if isinstance(e, StreamOpened)]) == 5000
    assert set(_rsts(sent(server)).values()) == {RESET_LIMIT}  # the last 1,000: max_streams
    assert server.budget_reserved == 0
    assert server.open_stream() % 2 == 0


def test_token_bucket_and_budget_basics() -> None:
    bucket = TokenBucket(2)
    assert [bucket.take(5.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(4.0) is False  # a clock going back refills nothing
    assert bucket.take(5.5) is True
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="negative"):
        MemoryBudget(-1)


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


def test_events_are_plain_values() -> None:
    assert StreamReset(1, 2) == StreamReset(1, 2)
    assert DataReceived(1, memoryview(b"ab")) == DataReceived(1, memoryview(bytearray(b"ab")))
    with pytest.raises(AttributeError):
        StreamEnded(1).stream_id = 2  # type: ignore[misc]
