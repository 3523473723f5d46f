"""Flow control between mux sessions: send buffers and credit, pings and the RTT, fair
scheduling of streams, and receive windows, their batched updates and auto-tuning."""

from __future__ import annotations

import zlib

import pytest

from portway.wire.flow import (
    DEFAULT_BUDGET,
    INITIAL_WINDOW,
    MAX_WINDOW,
    MemoryBudget,
    ReceiveWindow,
)
from portway.wire.mux import MuxSession
from portway.wire.mux_events import DataReceived, PingAcked, StreamOpened
from portway.wire.mux_frames import HEADER_SIZE, MAX_DATA_PAYLOAD, Header, encode_ping
from portway.wire.mux_sending import HIGH_WATER, LOW_WATER, QUANTUM

from .mux_bytes import DATA, PING, SYN, WU, data, parse, sent
from .muxing import Pair

# -- buffers, credit and pings ---------------------------------------------------------------------


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
