"""Streams between two mux sessions back to back: opening (data on the SYN), FIN, RST and
GO_AWAY, frames cut anywhere, misuse, and the limits on opening streams."""

from __future__ import annotations

import pytest

from portway.wire.codes import Reason
from portway.wire.flow import INITIAL_WINDOW, MemoryBudget, TokenBucket
from portway.wire.mux import MuxSession
from portway.wire.mux_errors import SessionClosed, StreamStateError
from portway.wire.mux_events import (
    DataReceived,
    GoAwayReceived,
    StreamEnded,
    StreamOpened,
    StreamReset,
)
from portway.wire.mux_frames import RESET_LIMIT, GoAwayCode, Header, encode_ping

from .mux_bytes import ACK, DATA, FIN, PING, RST, SYN, WU, data, parse, raw, sent
from .muxing import Pair

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


def test_events_are_plain_values() -> None:
    assert StreamReset(1, 2) == StreamReset(1, 2)
    assert DataReceived(1, memoryview(b"ab")) == DataReceived(1, memoryview(bytearray(b"ab")))
    with pytest.raises(AttributeError):
        StreamEnded(1).stream_id = 2  # type: ignore[misc]
