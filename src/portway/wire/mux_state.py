"""The state a :class:`~portway.wire.mux.MuxSession` keeps, and the bookkeeping both halves share.

:class:`SessionState` is the base of the session's two halves, ``SendingHalf`` in
:mod:`portway.wire.mux_sending` (local actions, frames out) and ``ReceivingHalf`` in
:mod:`portway.wire.mux_receiving` (frames in); ``MuxSession`` is composed of both. It holds every
field of the session, because the halves touch each other's queues (an inbound SYN queues an
ACK, a local reset cancels the DATA frame being parsed), and the steps either half takes on a
stream: checking that an id was ever opened, freeing a stream, failing the session.
"""

from __future__ import annotations

import collections
from typing import Final

from portway.wire.errors import ProtocolError
from portway.wire.flow import DEFAULT_BUDGET, MemoryBudget, RttEstimator, TokenBucket
from portway.wire.frames import Bytes
from portway.wire.mux_errors import StreamStateError
from portway.wire.mux_frames import GoAwayCode, encode_go_away
from portway.wire.mux_stream import StreamState

__all__ = ["DEFAULT_MAX_STREAMS", "DEFAULT_SYN_RATE", "SessionState"]

DEFAULT_MAX_STREAMS: Final = 4096
DEFAULT_SYN_RATE: Final = 20_000.0
"""New streams a second a session accepts from its peer by default (burst: one second's worth);
the hub sets its own, lower, rate for streams that agents open."""


class SessionState:
    """Every field of one session, and the bookkeeping on them; see :class:`MuxSession
    <portway.wire.mux.MuxSession>` for the parameters."""

    def __init__(
        self,
        *,
        client: bool,
        budget: int = DEFAULT_BUDGET,
        max_streams: int = DEFAULT_MAX_STREAMS,
        syn_rate: float = DEFAULT_SYN_RATE,
    ) -> None:
        self.client = client
        self.max_streams = max_streams
        self._parity = 1 if client else 0
        self._next_id = 1 if client else 2
        self._last_peer_id = 0
        self._budget = MemoryBudget(budget)
        self._syn_bucket = TokenBucket(syn_rate)
        self._rtt = RttEstimator()
        self._streams: dict[int, StreamState] = {}
        self._inbound = 0
        # outbound
        self._control: list[Bytes] = []  # whole session frames: pongs, pings, GO_AWAY, RSTs
        self._pending_pongs = 0
        self._ctl: dict[int, StreamState] = {}  # streams that may owe a WINDOW_UPDATE/ACK/FIN
        self._syn_queue: collections.deque[StreamState] = collections.deque()
        self._ready: collections.deque[StreamState] = collections.deque()
        self._writable: list[int] = []
        self._pings: dict[int, float] = {}
        self._ping_id = 0
        self._go_away: list[bytes] = []  # GO_AWAY frames waiting for the queued SYNs
        self._local_go_away = False
        self._remote_go_away = False
        self._error: ProtocolError | None = None
        # inbound parser
        self._stash = bytearray()  # a partial header, or a SYN/GO_AWAY frame not yet whole
        self._rx_left = 0  # payload bytes of the current DATA frame not yet seen
        self._rx_sid = 0  # its stream (0: discard, the stream is gone)
        self._rx_fin = False

    # -- bookkeeping -----------------------------------------------------------------------------

    def _seen(self, sid: int) -> bool:
        """``sid`` belongs to a stream that was opened at some point (live or not)."""
        if sid <= 0:
            return False
        if (sid & 1) == self._parity:
            return sid < self._next_id
        return sid <= self._last_peer_id

    def _check_stale(self, sid: int, what: str) -> None:
        """A frame for a stream that is not live: ignored if it was opened once, else an error."""
        if not sid:
            raise ProtocolError(f"{what} on stream 0")
        if not self._seen(sid):
            raise ProtocolError(f"{what} for stream {sid}, which was never opened")

    def _check_known(self, sid: int) -> None:
        if self._error is None and not self._seen(sid):
            raise StreamStateError(f"stream {sid} was never opened")

    def _free(self, st: StreamState) -> None:
        if st.dead:
            return
        st.dead = True
        del self._streams[st.id]
        self._budget.release(st.rx.reserved)
        if not st.local:
            self._inbound -= 1
        st.queue.clear()
        st.buffered = 0

    def _fail(self, exc: ProtocolError) -> None:
        self._error = exc
        self._control = [encode_go_away(GoAwayCode.from_label(exc.code), str(exc))]
        self._streams.clear()
        self._ctl.clear()
        self._syn_queue.clear()
        self._ready.clear()
        self._writable.clear()
        self._stash = bytearray()
        self._rx_left = 0
