"""What each frame from the peer does to a :class:`~portway.wire.mux.MuxSession`'s streams.

:class:`InboundFrames` holds the rules the parser (:mod:`portway.wire.mux_receiving`) applies once
it has read a frame's header: the ACK a stream this side opened must get first, the receive
window a DATA frame must fit in, the credit a ``WINDOW_UPDATE`` grants (at most
:data:`~portway.wire.flow.MAX_WINDOW`), inbound opens (admitted against ``max_streams``, the SYN
rate and the memory budget, or refused with an ``RST``), resets, FINs and pings. Breaking a rule
raises :class:`~portway.wire.errors.ProtocolError`; whatever must be answered (pongs, ACKs,
refusals) is queued for the sending half. It also takes the owner's :meth:`~InboundFrames.
consumed`, which gives received bytes' credit back. Only ``MuxSession`` uses it, through
``ReceivingHalf``.
"""

from __future__ import annotations

from typing import Final

from portway.wire.codes import Reason
from portway.wire.errors import ProtocolError
from portway.wire.flow import INITIAL_WINDOW, MAX_WINDOW
from portway.wire.mux_events import (
    Event,
    PingAcked,
    SendWindowOpened,
    StreamAccepted,
    StreamEnded,
    StreamOpened,
    StreamReset,
)
from portway.wire.mux_frames import RESET_LIMIT, Flag, encode_ping, encode_reset
from portway.wire.mux_state import SessionState
from portway.wire.mux_stream import StreamState

__all__ = ["MAX_PENDING_PONGS", "InboundFrames"]

MAX_PENDING_PONGS: Final = 256
"""Pings beyond this many answered-but-unsent replies go unanswered (a flood, not a peer)."""

_SYN: Final = int(Flag.SYN)
_ACK: Final = int(Flag.ACK)
_FIN: Final = int(Flag.FIN)
_RST: Final = int(Flag.RST)
_EMPTY: Final = memoryview(b"")


class InboundFrames(SessionState):
    """The rules of each inbound frame kind, and the receive windows' credit."""

    def consumed(self, stream_id: int, n: int, now: float) -> None:
        """The destination took ``n`` more received bytes of the stream: credit may go back.

        Called by the owner once bytes from ``StreamOpened``/``DataReceived`` were accepted by
        the destination socket (e.g. right after ``write`` while that transport is not paused,
        or from its ``resume_writing``); never for bytes it still buffers, or a slow destination
        would not slow the peer down. No-op for a stream that is gone. Next: ``data_to_send``.
        """
        if n < 0:
            raise ValueError("consumed a negative number of bytes")
        st = self._streams.get(stream_id)
        if st is None or not n:
            return
        if st.rx.consume(n, now, self._rtt.value, self._budget):
            self._ctl[stream_id] = st

    # -- the rule of each frame kind -------------------------------------------------------------

    def _account_data(
        self, st: StreamState, flags: int, length: int, now: float, events: list[Event]
    ) -> bool:
        """Check a DATA frame against its live stream and its window; True if it carries FIN."""
        self._check_ack(st, flags, events)
        if st.remote_fin:
            raise ProtocolError(f"DATA on stream {st.id} after its FIN")
        if not st.rx.receive(length, now):
            raise ProtocolError(
                f"DATA of {length} bytes on stream {st.id} exceeds its window "
                f"({st.rx.remaining} left)",
                code="flow_control_error",
            )
        if flags & _FIN:
            self._remote_fin(st)
            return True
        return False

    def _window_update(
        self, sid: int, flags: int, length: int, now: float, events: list[Event]
    ) -> None:
        if flags & _RST:
            self._reset(sid, flags, length, events)
            return
        if flags & _SYN:
            self._open_inbound(sid, flags, length, _EMPTY, now, events)
            return
        st = self._streams.get(sid)
        if st is None:
            self._check_stale(sid, "WINDOW_UPDATE")
            return
        self._check_ack(st, flags, events)
        if length:
            was = st.send_window
            st.send_window = was + length
            if st.send_window > MAX_WINDOW:
                raise ProtocolError(
                    f"stream {sid} was granted {st.send_window} bytes of credit, over {MAX_WINDOW}",
                    code="flow_control_error",
                )
            if was <= 0 and not st.fin_sent:
                events.append(SendWindowOpened(sid))
            if st.buffered and not st.in_ready and not st.syn_pending:
                st.in_ready = True
                self._ready.append(st)
        if flags & _FIN:
            if st.remote_fin:
                raise ProtocolError(f"second FIN on stream {sid}")
            self._remote_fin(st)
            events.append(StreamEnded(sid))

    def _open_inbound(
        self,
        sid: int,
        flags: int,
        credit: int,
        payload: memoryview,
        now: float,
        events: list[Event],
    ) -> None:
        """A SYN from the peer (on DATA with ``payload``, or on WINDOW_UPDATE with ``credit``)."""
        if not sid or (sid & 1) == self._parity:
            raise ProtocolError(f"SYN for stream {sid}, an id of this side's parity")
        if sid <= self._last_peer_id:
            raise ProtocolError(f"SYN for stream {sid}, not above {self._last_peer_id}")
        if flags & _ACK:
            raise ProtocolError("SYN combined with ACK")
        if self._remote_go_away:
            raise ProtocolError("SYN after the peer's GO_AWAY")
        self._last_peer_id = sid
        refuse: int | None = None
        if self._local_go_away:
            refuse = Reason.CLOSED
        elif self._inbound >= self.max_streams or not self._syn_bucket.take(now):
            refuse = RESET_LIMIT
        if refuse is not None:
            self._control.append(encode_reset(sid, refuse))
            return
        if INITIAL_WINDOW + credit > MAX_WINDOW:
            raise ProtocolError(
                f"stream {sid} was granted more than {MAX_WINDOW} bytes of credit",
                code="flow_control_error",
            )
        st = StreamState(sid, local=False)
        st.send_window = INITIAL_WINDOW + credit
        st.ack_pending = True
        st.rx.receive(len(payload), now)  # at most 64 KiB: always within the initial window
        self._streams[sid] = st
        self._inbound += 1
        self._ctl[sid] = st
        events.append(StreamOpened(sid, payload))
        if flags & _FIN:
            self._remote_fin(st)
            events.append(StreamEnded(sid))

    def _reset(self, sid: int, flags: int, code: int, events: list[Event]) -> None:
        if flags & (_SYN | _ACK | _FIN):
            raise ProtocolError("RST combined with other flags")
        if code > 0xFF:
            raise ProtocolError(f"RST code {code} does not fit in a byte")
        st = self._streams.get(sid)
        if st is None:
            self._check_stale(sid, "RST")
            return
        self._free(st)
        events.append(StreamReset(sid, code))

    def _check_ack(self, st: StreamState, flags: int, events: list[Event]) -> None:
        """The peer's first frame on a stream this side opened must accept it (ACK)."""
        if flags & _ACK:
            if st.acked or st.syn_pending:
                raise ProtocolError(f"unexpected ACK on stream {st.id}")
            st.acked = True
            events.append(StreamAccepted(st.id))
        elif not st.acked:
            raise ProtocolError(f"frame on stream {st.id} before its ACK")

    def _remote_fin(self, st: StreamState) -> None:
        st.remote_fin = True
        st.rx.finish(self._budget)
        if st.fin_sent:
            self._free(st)

    def _ping(self, sid: int, flags: int, length: int, now: float, events: list[Event]) -> None:
        if sid:
            raise ProtocolError("PING must travel on stream 0")
        if flags & (_SYN | _FIN | _RST):
            raise ProtocolError("PING with a flag other than ACK")
        if flags & _ACK:
            sent = self._pings.pop(length, None)
            if sent is not None:
                rtt = max(now - sent, 0.0)
                self._rtt.sample(rtt)
                events.append(PingAcked(rtt))
        elif self._pending_pongs < MAX_PENDING_PONGS:
            self._pending_pongs += 1
            self._control.append(encode_ping(length, ack=True))
