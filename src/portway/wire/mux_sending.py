"""The sending half of a :class:`~portway.wire.mux.MuxSession`: the owner's actions, frames out.

:class:`SendingHalf` holds what the owner calls to act on the session (open, send, end and reset
streams, ping, go away) and :meth:`~SendingHalf.data_to_send`, which frames what those queued:
session frames first, then window updates, ACKs and FINs, then SYNs in id order (a GO_AWAY
waits for the SYNs queued before it), then stream data round-robin within each stream's send
window. ``MuxSession`` inherits it alongside :class:`~portway.wire.mux_receiving.ReceivingHalf`;
nothing else uses it directly. The owner's flow-control contract (``HIGH_WATER``,
``LOW_WATER``) is defined here.
"""

from __future__ import annotations

from typing import Final

from portway.wire.codes import Reason
from portway.wire.frames import Bytes
from portway.wire.mux_errors import LimitReached, SessionClosed, StreamStateError
from portway.wire.mux_frames import (
    HEADER,
    HEADER_SIZE,
    MAX_DATA_PAYLOAD,
    MAX_U32,
    MUX_VERSION,
    Flag,
    FrameType,
    GoAwayCode,
    encode_go_away,
    encode_ping,
    encode_reset,
)
from portway.wire.mux_state import SessionState
from portway.wire.mux_stream import StreamState

__all__ = [
    "DEFAULT_SEND_SIZE",
    "HIGH_WATER",
    "LOW_WATER",
    "MAX_OUTSTANDING_PINGS",
    "QUANTUM",
    "SendingHalf",
]

QUANTUM: Final = 16 * 1024
"""Bytes one stream may send per round-robin turn while other streams wait."""
HIGH_WATER: Final = 256 * 1024
"""The owner stops reading a stream's source once its :meth:`MuxSession.send_buffered` exceeds
this."""
LOW_WATER: Final = HIGH_WATER // 2
"""... and resumes once it is back at or below this (reported by ``writable_streams``)."""
DEFAULT_SEND_SIZE: Final = 256 * 1024
MAX_OUTSTANDING_PINGS: Final = 16

_DATA: Final = int(FrameType.DATA)
_WINDOW_UPDATE: Final = int(FrameType.WINDOW_UPDATE)
_SYN: Final = int(Flag.SYN)
_ACK: Final = int(Flag.ACK)
_FIN: Final = int(Flag.FIN)
_COPY_LIMIT: Final = 4096  # a frame crossing a queued buffer joins pieces only below this size
_pack = HEADER.pack


class SendingHalf(SessionState):
    """The owner's actions on the session and the framing of what they queue."""

    # -- local actions ---------------------------------------------------------------------------

    def open_stream(self, data: Bytes = b"") -> int:
        """Open a stream and return its id; ``data`` rides on the SYN frame (no round trip).

        Called by the owner when a new connection must be carried. Up to :data:`INITIAL_WINDOW`
        may be sent before the peer's ACK. Raises :class:`SessionClosed` (GO_AWAY sent or
        received, or the session failed) or :class:`LimitReached` (stream ids exhausted): open
        it on another session. Next: ``data_to_send``.
        """
        if self._error is not None or self._local_go_away or self._remote_go_away:
            raise SessionClosed("this session takes no new streams")
        sid = self._next_id
        if sid > MAX_U32:
            raise LimitReached("stream ids of this session are exhausted")
        self._next_id = sid + 2
        st = StreamState(sid, local=True)
        self._streams[sid] = st
        self._syn_queue.append(st)
        if data:
            st.queue.append(data)
            st.buffered = len(data)
            st.over_high = st.buffered > HIGH_WATER
        return sid

    def send(self, stream_id: int, data: Bytes) -> None:
        """Queue ``data`` on the stream (kept by reference: do not modify it afterwards).

        Called by the owner for each read from the stream's source socket. Contract: while
        ``send_buffered(stream_id) > HIGH_WATER`` the owner must stop reading that source; the
        stream is named by :meth:`writable_streams` once it drained to :data:`LOW_WATER`. A
        stream that is already gone (reset by either side, or finished) drops ``data`` silently
        (its end was or will be reported as an event). Raises :class:`StreamStateError` for an id
        that was never opened or after :meth:`end_stream`. Next: ``data_to_send``.
        """
        st = self._streams.get(stream_id)
        if st is None:
            self._check_known(stream_id)
            return
        if st.fin_queued:
            raise StreamStateError(f"stream {stream_id} was ended by this side")
        n = len(data)
        if not n:
            return
        st.queue.append(data)
        st.buffered += n
        if st.buffered > HIGH_WATER:
            st.over_high = True
        if not st.in_ready and st.send_window > 0 and not st.syn_pending:
            st.in_ready = True
            self._ready.append(st)

    def end_stream(self, stream_id: int) -> None:
        """Half-close: a FIN goes out after the queued data. Idempotent; no-op for a stream that
        is gone. Called when the stream's source reached EOF. Next: ``data_to_send``."""
        st = self._streams.get(stream_id)
        if st is None:
            self._check_known(stream_id)
            return
        if st.fin_queued:
            return
        st.fin_queued = True
        if not st.buffered and not st.syn_pending:
            self._ctl[stream_id] = st

    def reset_stream(self, stream_id: int, code: int = Reason.RESET) -> None:
        """Abort the stream: queued data is dropped, an ``RST`` with ``code`` (a Reason byte)
        goes out, the state is freed at once. No-op for a stream that is gone. Called when the
        stream's source or destination failed. Next: ``data_to_send``."""
        if not 0 <= code <= 0xFF:
            raise ValueError(f"reset code {code} does not fit in a byte")
        st = self._streams.get(stream_id)
        if st is None:
            self._check_known(stream_id)
            return
        if not st.syn_pending:  # a stream the peer never heard of needs no RST
            self._control.append(encode_reset(stream_id, code))
        if self._rx_sid == stream_id:  # the rest of a DATA frame in progress is dropped
            self._rx_sid = 0
            self._rx_fin = False
        self._free(st)

    def ping(self, now: float) -> None:
        """Queue a ``PING``; the reply yields :class:`PingAcked` and updates :attr:`rtt`.

        Called by the owner's heartbeat timer (the RTT also drives window auto-tuning, so ping
        every few seconds while streams are busy). Next: ``data_to_send``.
        """
        if self._error is not None:
            return
        opaque = self._ping_id
        self._ping_id = (opaque + 1) & MAX_U32
        self._pings[opaque] = now
        if len(self._pings) > MAX_OUTSTANDING_PINGS:
            del self._pings[next(iter(self._pings))]
        self._control.append(encode_ping(opaque))

    def go_away(self, code: int = GoAwayCode.NORMAL, message: str = "") -> None:
        """Queue a ``GO_AWAY``: from now on no stream is opened here and inbound SYNs are refused
        (``RST`` with ``Reason.CLOSED``); live streams may finish. Called by the owner on shutdown
        or to report an internal error (then close after writing ``data_to_send``)."""
        if self._error is not None:
            return
        self._local_go_away = True
        # After the SYNs already queued, which the peer must still see as opened before it.
        self._go_away.append(encode_go_away(code, message))

    def writable_streams(self) -> list[int]:
        """Streams that exceeded :data:`HIGH_WATER` and have drained to :data:`LOW_WATER` since
        the last call; called by the owner after ``data_to_send`` to resume their sources."""
        out, self._writable = self._writable, []
        return out

    # -- outbound --------------------------------------------------------------------------------

    def data_to_send(self, max_bytes: int = DEFAULT_SEND_SIZE) -> list[Bytes]:
        """Frames to write now, as buffers for one ``transport.writelines`` call.

        Called by the owner after every other call (and when its transport resumes writing).
        Order: session frames (pongs, pings, RSTs) and per-stream window updates, ACKs and
        FINs without data; then SYNs in id order; then a GO_AWAY (after the SYNs queued before
        it, so the peer never sees a SYN after it); then stream data round-robin, at most
        :data:`QUANTUM` per stream per turn (a stream alone may use whole 64 KiB frames), until
        about ``max_bytes`` (control frames are never held back) or nothing is sendable. Payloads
        are the buffers given to :meth:`send`, or slices of them, uncopied. Returns ``[]`` when
        there is nothing to send; call again until then while the transport takes more.
        """
        if max_bytes <= HEADER_SIZE:
            raise ValueError("max_bytes must leave room for a frame")
        out = self._control
        self._control = []
        self._pending_pongs = 0
        if self._error is not None:
            return out
        room = max_bytes - sum(map(len, out)) if out else max_bytes
        if self._ctl:
            room -= self._flush_control(out)
        if self._syn_queue:
            room = self._send_syns(out, room)
        if self._go_away and not self._syn_queue:
            out += self._go_away
            self._go_away = []
        if self._ready and room > HEADER_SIZE:
            self._send_data(out, room)
        return out

    def _flush_control(self, out: list[Bytes]) -> int:
        size = 0
        for st in self._ctl.values():
            if st.dead or st.syn_pending:
                continue
            delta = st.rx.take_update() if st.rx.unreturned else 0
            fin = st.fin_queued and not st.fin_sent and not st.buffered
            flags = 0
            if st.ack_pending:
                if not delta and not fin and st.send_window > 0 and st.buffered:
                    continue  # the ACK rides on this stream's first DATA frame
                flags = _ACK
                st.ack_pending = False
            if fin:
                flags |= _FIN
                st.fin_sent = True
            if flags or delta:
                out.append(_pack(MUX_VERSION, _WINDOW_UPDATE, flags, st.id, delta))
                size += HEADER_SIZE
            if fin and st.remote_fin:
                self._free(st)
        self._ctl.clear()
        return size

    def _send_syns(self, out: list[Bytes], room: int) -> int:
        queue = self._syn_queue
        while queue:
            st = queue[0]
            if st.dead:
                queue.popleft()
                continue
            flags = _SYN
            if st.buffered:
                n = min(st.buffered, st.send_window, QUANTUM, room - HEADER_SIZE)
                if n <= 0:
                    break  # SYNs must leave in id order: the later ones wait too
                payload = self._take(st, n)
                n = len(payload)
                st.buffered -= n
                st.send_window -= n
                if not st.buffered and st.fin_queued:
                    flags |= _FIN
                    st.fin_sent = True
                out.append(_pack(MUX_VERSION, _DATA, flags, st.id, n))
                out.append(payload)
                room -= HEADER_SIZE + n
            else:
                if st.fin_queued:
                    flags |= _FIN
                    st.fin_sent = True
                out.append(_pack(MUX_VERSION, _WINDOW_UPDATE, flags, st.id, 0))
                room -= HEADER_SIZE
            queue.popleft()
            st.syn_pending = False
            if st.buffered and st.send_window > 0:
                st.in_ready = True
                self._ready.append(st)
            if st.over_high and st.buffered <= LOW_WATER:
                st.over_high = False
                self._writable.append(st.id)
        return room

    def _send_data(self, out: list[Bytes], room: int) -> None:
        ready = self._ready
        append = out.append
        while ready and room > HEADER_SIZE:
            st = ready.popleft()
            st.in_ready = False
            if st.dead:
                continue
            # A stream alone in the ring may use whole frames: nobody waits behind it.
            cap = QUANTUM if ready else MAX_DATA_PAYLOAD
            n = min(st.buffered, st.send_window, cap, room - HEADER_SIZE)
            payload = self._take(st, n)
            n = len(payload)
            st.buffered -= n
            st.send_window -= n
            room -= HEADER_SIZE + n
            flags = 0
            if st.ack_pending:
                flags = _ACK
                st.ack_pending = False
            if st.buffered:
                if st.send_window > 0:
                    st.in_ready = True
                    ready.append(st)
            elif st.fin_queued:
                flags |= _FIN
                st.fin_sent = True
            append(_pack(MUX_VERSION, _DATA, flags, st.id, n))
            append(payload)
            if st.fin_sent and st.remote_fin:
                self._free(st)
            if st.over_high and st.buffered <= LOW_WATER:
                st.over_high = False
                self._writable.append(st.id)

    @staticmethod
    def _take(st: StreamState, n: int) -> Bytes:
        """Up to ``n`` (>= 1) queued bytes of ``st`` as one payload, without copying big pieces."""
        queue = st.queue
        head = queue[0]
        off = st.head_off
        avail = len(head) - off
        if avail > n:
            st.head_off = off + n
            return memoryview(head)[off : off + n]
        if avail == n or avail >= _COPY_LIMIT or len(queue) == 1:
            queue.popleft()
            st.head_off = 0
            return memoryview(head)[off:] if off else head
        # Small pieces: join them into one frame (copies at most _COPY_LIMIT-ish per piece).
        parts: list[Bytes] = [memoryview(head)[off:] if off else head]
        queue.popleft()
        st.head_off = 0
        got = avail
        while got < n and queue:
            head = queue[0]
            size = len(head)
            if got + size <= n:
                parts.append(head)
                queue.popleft()
                got += size
            else:
                parts.append(memoryview(head)[: n - got])
                st.head_off = n - got
                got = n
        return b"".join(parts)
