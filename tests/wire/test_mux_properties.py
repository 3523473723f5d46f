"""Property tests: random interleavings of stream operations between two sessions."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from portway.wire.codes import Reason
from portway.wire.flow import DEFAULT_BUDGET, INITIAL_WINDOW
from portway.wire.mux import MuxSession
from portway.wire.mux_errors import LimitReached, SessionClosed
from portway.wire.mux_events import DataReceived, Event
from portway.wire.mux_frames import RESET_LIMIT

from .chunking import cuts
from .muxing import Pair, Peer

_BASE = bytes(i % 251 for i in range(251 * 800))


def pattern(sid: int, side: int, offset: int, n: int) -> bytes:
    """Bytes that differ by stream, direction and position, so misordering shows."""
    start = (offset + sid * 31 + side * 17) % 251
    return _BASE[start : start + n]


sizes = st.one_of(st.integers(1, 300), st.integers(1000, 40_000), st.integers(100_000, 180_000))
OPS = ("open", "send", "send", "send", "end", "reset", "consume", "pump", "pump", "pump", "ping")
OPS_RARE = ("go_away", "tick")


class Model:
    """What each application sent, so the receiving side can be checked byte for byte."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.sent: defaultdict[tuple[int, int], bytearray] = defaultdict(bytearray)
        self.ended: set[tuple[int, int]] = set()  # (stream, sending side) that sent FIN
        self.reset: set[int] = set()
        self.opened_by: dict[int, int] = {}

    def peer(self, side: int) -> Peer:
        return self.pair.a if side == 0 else self.pair.b

    def streams(self, side: int) -> list[int]:
        """Streams this side's application knows and has not seen die."""
        peer = self.peer(side)
        known = [s for s, by in self.opened_by.items() if by == side] + peer.opened
        return sorted(s for s in known if s not in self.reset and s not in peer.resets)

    def writable(self, side: int) -> list[int]:
        return [s for s in self.streams(side) if (s, side) not in self.ended]

    def add(self, sid: int, side: int, n: int) -> bytes:
        payload = pattern(sid, side, len(self.sent[sid, side]), n)
        self.sent[sid, side] += payload
        return payload


def step(model: Model, data: st.DataObject, op: str, side: int) -> None:
    pair = model.pair
    peer = model.peer(side)
    session = peer.session
    if op == "open":
        n = data.draw(st.one_of(st.just(0), sizes))
        if session.going_away:
            return
        sid = session._next_id
        payload = pattern(sid, side, 0, n)
        try:
            assert session.open_stream(payload) == sid
        except LimitReached:
            return
        model.opened_by[sid] = side
        model.sent[sid, side] += payload
    elif op in ("send", "end", "reset", "consume"):
        candidates = model.writable(side) if op in ("send", "end") else model.streams(side)
        if not candidates:
            return
        sid = data.draw(st.sampled_from(candidates))
        if op == "send":
            session.send(sid, model.add(sid, side, data.draw(sizes)))
        elif op == "end":
            session.end_stream(sid)
            model.ended.add((sid, side))
        elif op == "reset":
            session.reset_stream(sid, data.draw(st.sampled_from(Reason)))
            model.reset.add(sid)
        else:
            held = peer.unconsumed[sid]
            n = data.draw(st.integers(0, held))
            session.consumed(sid, n, pair.now)
            peer.unconsumed[sid] -= n
    elif op == "pump":
        other = model.peer(1 - side)
        max_bytes = data.draw(st.sampled_from([100, 1500, 16 * 1024, 256 * 1024]))
        out = b"".join(session.data_to_send(max_bytes))
        for piece in data.draw(cuts(out)):
            other.feed(piece, pair.now)
    elif op == "ping":
        session.ping(pair.now)
    elif op == "go_away":
        session.go_away()
    else:
        pair.now += data.draw(st.floats(0, 0.3))
    check_invariants(session)


def check_invariants(session: MuxSession) -> None:
    reserved = 0
    for stream in session._streams.values():
        rx = stream.rx
        if not rx.closed:
            assert rx.remaining + rx.held + rx.unreturned == rx.size
            assert rx.remaining >= 0
        reserved += rx.reserved
        assert stream.buffered == sum(len(b) for b in stream.queue) - stream.head_off
        assert stream.send_window >= 0
    assert reserved == session.budget_reserved <= session._budget.limit


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.data(),
    st.sampled_from([DEFAULT_BUDGET, 4 * INITIAL_WINDOW]),
    st.sampled_from([4096, 3]),
)
def test_random_interleavings_deliver_everything_exactly(
    data: st.DataObject, budget: int, max_streams: int
) -> None:
    pair = Pair(budget=budget, max_streams=max_streams)
    model = Model(pair)
    for _ in range(data.draw(st.integers(1, 4))):
        step(model, data, "open", data.draw(st.integers(0, 1)))
    for _ in range(data.draw(st.integers(1, 40))):
        op = data.draw(st.sampled_from(OPS + OPS_RARE))
        step(model, data, op, data.draw(st.integers(0, 1)))

    # Drain: pump both ways and consume everything; it must terminate with all data delivered.
    pair.settle(max_rounds=2000)
    total = sum(map(len, model.sent.values()))
    event(f"streams: {min(len(model.opened_by), 5)}{'+' if len(model.opened_by) >= 5 else ''}")
    event(f"bytes sent: {'>1 MB' if total > 1e6 else '>100 kB' if total > 1e5 else 'less'}")
    event(f"resets: {bool(model.reset)}, refused: {RESET_LIMIT in pair.a.resets.values()}")
    a, b = pair.a, pair.b
    for peer in (a, b):
        assert not peer.session.closed
        assert not peer.session.has_data_to_send or peer.session.data_to_send() == []
    reset = model.reset | set(a.resets) | set(b.resets)
    for (sid, side), payload in model.sent.items():
        receiver = b if side == 0 else a
        got = bytes(receiver.received[sid])
        if sid in reset:
            assert payload.startswith(got)
        else:
            assert got == payload, f"stream {sid} from side {side}"
            assert (sid in receiver.ended) == ((sid, side) in model.ended)
    for code in list(a.resets.values()) + list(b.resets.values()):
        assert code in (*Reason, RESET_LIMIT)
    # Streams are freed once both directions ended or one side reset; nothing else is.
    opened = set(model.opened_by)
    for peer in (a, b):
        live = set(peer.session.stream_ids())
        done = {
            s for s in opened if s in reset or {(s, 0), (s, 1)} <= model.ended or s in peer.resets
        }
        assert not live & done
        assert peer.session.budget_reserved == sum(
            stream.rx.reserved for stream in peer.session._streams.values()
        )
        assert all(not stream.rx.held for stream in peer.session._streams.values())
    # Every stream that was not reset reached its peer, which accepted it.
    for sid, side in model.opened_by.items():
        if sid not in reset:
            opener, other = (a, b) if side == 0 else (b, a)
            assert sid in opener.accepted
            assert sid in other.opened


def _merge(events: list[Event]) -> list[object]:
    """Events with consecutive DataReceived of one stream joined (cuts may split them)."""
    out: list[object] = []
    for ev in events:
        if isinstance(ev, DataReceived):
            last = out[-1] if out else None
            if isinstance(last, tuple) and last[0] == ev.stream_id:
                out[-1] = (ev.stream_id, last[1] + bytes(ev.data))
                continue
            out.append((ev.stream_id, bytes(ev.data)))
        else:
            out.append(ev)
    return out


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_decoding_does_not_depend_on_how_the_bytes_are_cut(data: st.DataObject) -> None:
    client = MuxSession(client=True)
    for _ in range(data.draw(st.integers(1, 8))):
        sid = client.open_stream(pattern(0, 0, 0, data.draw(st.integers(0, 70_000))))
        if data.draw(st.booleans()):
            client.send(sid, pattern(sid, 0, 0, data.draw(st.integers(0, 70_000))))
        if data.draw(st.booleans()):
            client.end_stream(sid)
        if data.draw(st.booleans()):
            client.ping(0.0)
    client.go_away(0, "done")
    wire = b""
    while chunk := b"".join(client.data_to_send(data.draw(st.sampled_from([200, 70_000])))):
        wire += chunk
    whole = MuxSession(client=False).receive_data(wire, 0.0)
    pieces = MuxSession(client=False)
    cut_events: list[Event] = []
    for piece in data.draw(cuts(wire)):
        cut_events += pieces.receive_data(piece, 0.0)
    assert _merge(cut_events) == _merge(whole)


def test_every_split_point_and_byte_by_byte() -> None:
    client = MuxSession(client=True)
    first = client.open_stream(b"syn data")
    client.send(first, b"more")
    client.end_stream(first)
    second = client.open_stream()
    client.ping(0.0)
    wire = b"".join(client.data_to_send())
    client.send(second, b"abcdefghij")
    client.reset_stream(first)
    client.go_away(0, "bye")
    wire += b"".join(client.data_to_send())
    expected = _merge(MuxSession(client=False).receive_data(wire, 0.0))
    for at in range(len(wire) + 1):
        server = MuxSession(client=False)
        events = server.receive_data(wire[:at], 0.0) + server.receive_data(wire[at:], 0.0)
        assert _merge(events) == expected, at
    server = MuxSession(client=False)
    events = []
    for i in range(len(wire)):
        events += server.receive_data(wire[i : i + 1], 0.0)
    assert _merge(events) == expected


def test_after_go_away_nothing_new_opens_either_way() -> None:
    pair = Pair()
    pair.a.session.go_away()
    pair.settle()
    for peer in (pair.a, pair.b):
        try:
            peer.session.open_stream()
        except SessionClosed:
            continue
        raise AssertionError("a stream opened after GO_AWAY")
