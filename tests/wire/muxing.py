"""Two mux sessions wired back to back in memory, recording what each application would see."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from portway.wire.flow import DEFAULT_BUDGET
from portway.wire.frames import Bytes
from portway.wire.mux import MuxSession
from portway.wire.mux_events import (
    DataReceived,
    Event,
    GoAwayReceived,
    PingAcked,
    SendWindowOpened,
    StreamAccepted,
    StreamEnded,
    StreamOpened,
    StreamReset,
)
from portway.wire.mux_state import DEFAULT_MAX_STREAMS, DEFAULT_SYN_RATE

Cutter = Callable[[bytes], Sequence[bytes]]


class Peer:
    """One session plus the state its application keeps: bytes per stream, ends, resets."""

    def __init__(self, session: MuxSession) -> None:
        self.session = session
        self.received: defaultdict[int, bytearray] = defaultdict(bytearray)
        self.unconsumed: defaultdict[int, int] = defaultdict(int)
        self.opened: list[int] = []  # streams the peer opened, in order
        self.accepted: list[int] = []
        self.ended: list[int] = []
        self.resets: dict[int, int] = {}
        self.windows_opened: list[int] = []
        self.go_aways: list[GoAwayReceived] = []
        self.rtts: list[float] = []
        self.events: list[Event] = []
        self.slow: set[int] = set()  # streams whose bytes this application never consumes

    def feed(self, data: Bytes, now: float) -> list[Event]:
        events = self.session.receive_data(data, now)
        self.events += events
        for ev in events:
            if isinstance(ev, DataReceived | StreamOpened):
                if isinstance(ev, StreamOpened):
                    assert ev.stream_id not in self.opened
                    self.opened.append(ev.stream_id)
                assert ev.stream_id not in self.ended, "data after the end of a stream"
                self.received[ev.stream_id] += ev.data
                self.unconsumed[ev.stream_id] += len(ev.data)
            elif isinstance(ev, StreamAccepted):
                self.accepted.append(ev.stream_id)
            elif isinstance(ev, StreamEnded):
                assert ev.stream_id not in self.ended
                self.ended.append(ev.stream_id)
            elif isinstance(ev, StreamReset):
                self.resets[ev.stream_id] = ev.code
            elif isinstance(ev, SendWindowOpened):
                self.windows_opened.append(ev.stream_id)
            elif isinstance(ev, GoAwayReceived):
                self.go_aways.append(ev)
            elif isinstance(ev, PingAcked):
                self.rtts.append(ev.rtt)
        return events

    def consume(self, now: float, only: int | None = None) -> int:
        """Report every received byte as taken by its destination (except slow streams)."""
        total = 0
        for sid, n in list(self.unconsumed.items()):
            if n and sid not in self.slow and (only is None or sid == only):
                self.session.consumed(sid, n, now)
                self.unconsumed[sid] = 0
                total += n
        return total


class Pair:
    """Client ``a`` (the agent, odd ids) and server ``b`` (the hub, even ids)."""

    def __init__(
        self,
        *,
        budget: int = DEFAULT_BUDGET,
        max_streams: int = DEFAULT_MAX_STREAMS,
        syn_rate: float = DEFAULT_SYN_RATE,
    ) -> None:
        limits = {"budget": budget, "max_streams": max_streams}
        self.a = Peer(MuxSession(client=True, syn_rate=syn_rate, **limits))
        self.b = Peer(MuxSession(client=False, syn_rate=syn_rate, **limits))
        self.now = 0.0

    def move(
        self, src: Peer, dst: Peer, max_bytes: int = 256 * 1024, cut: Cutter | None = None
    ) -> int:
        """One ``data_to_send`` of ``src`` into ``dst`` (optionally cut into pieces)."""
        data = b"".join(src.session.data_to_send(max_bytes))
        for piece in cut(data) if cut is not None else [data]:
            dst.feed(piece, self.now)
        return len(data)

    def exchange(self, cut: Cutter | None = None) -> int:
        return self.move(self.a, self.b, cut=cut) + self.move(self.b, self.a, cut=cut)

    def settle(self, max_rounds: int = 100_000, cut: Cutter | None = None) -> int:
        """Pump both ways and consume until nothing moves; return the rounds it took."""
        for rounds in range(1, max_rounds + 1):
            moved = self.exchange(cut)
            consumed = self.a.consume(self.now) + self.b.consume(self.now)
            if not moved and not consumed:
                return rounds
        raise AssertionError(f"still moving after {max_rounds} rounds: a deadlock or a livelock")
