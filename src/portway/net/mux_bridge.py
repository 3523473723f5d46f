"""Two streams relayed to each other: the hub's part of a reach connection, between a stream to
the reaching agent and one to the exposing agent (usually on two sessions)."""

from __future__ import annotations

from collections.abc import Callable

from portway.net.mux_stream import MuxStream
from portway.wire.codes import Reason


class StreamBridge:
    """Relays end ``a``'s stream to end ``b``'s and back, with no copy beyond one per read.

    Created by the hub's pairing for a reach connection; each end :meth:`join` s once its
    stream has answered ``assign_ok``, in either order. Until both have, neither stream has a
    sink, so each holds what its peer sends (at most its window: the sender then waits). Then
    DATA goes across as it arrives, its credit returned while the other stream's send queue is
    under its high-water mark and from its ``resume_source`` otherwise; FIN and RST (with its
    reason) cross too. `Traffic` counts it (``bytes_a_to_b``: what the reaching side sent) and
    resets it; ``on_close`` is called once, at the end.
    """

    def __init__(self, *, on_close: Callable[[StreamBridge], None] | None = None) -> None:
        self.a = BridgeEnd(self)
        self.b = BridgeEnd(self)
        self.a.peer, self.b.peer = self.b, self.a
        self.open = True
        self.result: Reason | None = None
        self._on_close = on_close

    @property
    def bytes_a_to_b(self) -> int:
        return self.a.bytes_in

    @property
    def bytes_b_to_a(self) -> int:
        return self.b.bytes_in

    def join(self, end: BridgeEnd, stream: MuxStream, first: bytes = b"") -> None:
        """``end``'s stream is ready; ``first`` holds its bytes a framed reader read past
        ``assign_ok``. Called in the step that detached the stream."""
        end.stream = stream
        end.first = first
        if not self.open:
            stream.reset(self.result or Reason.RESET)
            return
        peer = end.peer
        if peer.stream is None:
            return
        for side in (end, peer):
            if side.first:
                side.bytes_in += len(side.first)
                side.peer.send(side.first)
                side.first = b""
        stream.attach(end)
        peer.stream.attach(peer)

    def reset(self, reason: Reason = Reason.CLOSED) -> None:
        """Abort both streams with ``reason`` (tunnel paused or deleted, guest revoked, a
        failed dial)."""
        if not self.open:
            return
        for end in (self.a, self.b):
            if end.stream is not None:
                end.stream.reset(reason)
        self._finish(reason)

    def _finish(self, result: Reason | None) -> None:
        self.open = False
        self.result = result
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close(self)


class BridgeEnd:
    """The sink of one stream of a :class:`StreamBridge`: what it receives goes to the peer."""

    def __init__(self, bridge: StreamBridge) -> None:
        self.bridge = bridge
        self.peer: BridgeEnd = self
        self.stream: MuxStream | None = None
        self.first = b""
        self.bytes_in = 0
        self.full = False  # this stream's send queue is over its high-water mark
        self.owed = 0  # credit held back while the peer's stream is full
        self.eof_in = False

    def send(self, data: bytes) -> None:
        assert self.stream is not None
        self.stream.write(data)

    def stream_data(self, data: memoryview) -> None:
        if not self.bridge.open:
            return
        n = len(data)
        self.bytes_in += n
        self.peer.send(bytes(data))  # the read buffer is reused before the peer's flush
        if self.peer.full:
            self.owed += n
        else:
            assert self.stream is not None
            self.stream.consumed(n)

    def stream_eof(self) -> None:
        self.eof_in = True
        peer = self.peer
        if not self.bridge.open or peer.stream is None:
            return
        peer.stream.write_eof()
        if peer.eof_in:  # both directions finished: the bridge is done
            for end in (self, peer):
                assert end.stream is not None
                end.stream.connection.forget(end.stream.id)
            self.bridge._finish(None)

    def stream_reset(self, code: int) -> None:
        bridge = self.bridge
        if not bridge.open:
            return
        reason = Reason.from_code(code)
        if self.peer.stream is not None:
            self.peer.stream.reset(reason)
        bridge._finish(reason)

    def pause_source(self) -> None:
        self.full = True

    def resume_source(self) -> None:
        self.full = False
        peer = self.peer
        if peer.owed and peer.stream is not None:
            owed, peer.owed = peer.owed, 0
            peer.stream.consumed(owed)
