"""The receiving half of a :class:`~portway.wire.mux.MuxSession`: bytes in, events out.

:class:`ReceivingHalf` is the frame parser: :meth:`~ReceivingHalf.receive_data` walks the bytes
the connection delivered, reads each frame header, and hands the frame to the rule for its kind
(:class:`~portway.wire.mux_inbound.InboundFrames`), returning the
:mod:`portway.wire.mux_events` they complete. A frame may straddle reads: a DATA payload is
delivered piece by piece as it arrives (as memoryviews of the caller's buffer, uncopied), while
a header, a SYN frame (its payload comes whole with ``StreamOpened``) or a ``GO_AWAY`` is
stashed until complete. ``MuxSession`` inherits it alongside
:class:`~portway.wire.mux_sending.SendingHalf`; nothing else uses it directly.
"""

from __future__ import annotations

from typing import Final

from portway.wire.errors import ProtocolError
from portway.wire.frames import Bytes
from portway.wire.mux_events import DataReceived, Event, GoAwayReceived, StreamEnded
from portway.wire.mux_frames import (
    HEADER,
    HEADER_SIZE,
    KNOWN_FLAGS,
    MAX_DATA_PAYLOAD,
    MAX_GO_AWAY_PAYLOAD,
    MUX_VERSION,
    Flag,
    FrameType,
    decode_go_away,
)
from portway.wire.mux_inbound import InboundFrames

__all__ = ["ReceivingHalf"]

_DATA: Final = int(FrameType.DATA)
_WINDOW_UPDATE: Final = int(FrameType.WINDOW_UPDATE)
_PING: Final = int(FrameType.PING)
_GO_AWAY: Final = int(FrameType.GO_AWAY)
_SYN: Final = int(Flag.SYN)
_RST: Final = int(Flag.RST)
_unpack = HEADER.unpack_from


class ReceivingHalf(InboundFrames):
    """The parser of the peer's frames (the rules of each kind come from the base)."""

    def receive_data(self, data: Bytes, now: float) -> list[Event]:
        """Feed bytes read from the connection; return the events they complete, in order.

        Called by the owner's ``data_received`` with every byte read (never paused: the windows
        bound what may arrive). ``now`` is the owner's monotonic clock (RTT, SYN rate). The owner
        handles each event, then calls :meth:`data_to_send` and writes it (pongs, ACKs and
        refusals are queued here). Raises :class:`ProtocolError` when the peer broke the
        protocol; see the module docs for what follows.
        """
        if self._error is not None:
            raise self._error
        events: list[Event] = []
        view = memoryview(data)
        if view.format != "B":
            view = view.cast("B")
        try:
            self._receive(view, now, events)
        except ProtocolError as exc:
            self._fail(exc)
            raise
        return events

    def _receive(self, view: memoryview, now: float, events: list[Event]) -> None:
        end = len(view)
        pos = 0
        if self._rx_left:
            pos = self._payload(view, 0, end, events)
        if self._stash and pos < end:
            pos = self._unstash(view, pos, end, now, events)
        frame = self._frame
        data = self._data
        while end - pos >= HEADER_SIZE:
            version, kind, flags, sid, length = _unpack(view, pos)
            if kind == _DATA and version == MUX_VERSION:  # the hot path skips the dispatcher
                pos = data(flags, sid, length, view, pos + HEADER_SIZE, end, now, events)
            else:
                pos = frame(
                    version, kind, flags, sid, length, view, pos + HEADER_SIZE, end, now, events
                )
        if pos < end:
            self._stash += view[pos:end]

    def _payload(self, view: memoryview, pos: int, end: int, events: list[Event]) -> int:
        """Deliver the next piece of a DATA payload whose header came in an earlier read."""
        n = min(self._rx_left, end - pos)
        if n and self._rx_sid:
            events.append(DataReceived(self._rx_sid, view[pos : pos + n]))
        self._rx_left -= n
        if not self._rx_left and self._rx_fin:
            events.append(StreamEnded(self._rx_sid))
            self._rx_fin = False
        return pos + n

    def _unstash(
        self, view: memoryview, pos: int, end: int, now: float, events: list[Event]
    ) -> int:
        """Complete the frame whose start was stashed; return the position after what it used."""
        stash = self._stash
        if len(stash) < HEADER_SIZE:
            take = min(HEADER_SIZE - len(stash), end - pos)
            stash += view[pos : pos + take]
            pos += take
            if len(stash) < HEADER_SIZE:
                return pos
        version, kind, flags, sid, length = _unpack(stash, 0)
        if version == MUX_VERSION and (
            (kind == _DATA and flags & _SYN and length <= MAX_DATA_PAYLOAD)
            or (kind == _GO_AWAY and length <= MAX_GO_AWAY_PAYLOAD)
        ):
            want = HEADER_SIZE + length
            take = min(want - len(stash), end - pos)
            stash += view[pos : pos + take]
            pos += take
            if len(stash) < want:
                return pos
            whole = memoryview(bytes(stash))
            stash.clear()
            self._frame(version, kind, flags, sid, length, whole, HEADER_SIZE, want, now, events)
            return pos
        stash.clear()
        return self._frame(version, kind, flags, sid, length, view, pos, end, now, events)

    def _frame(
        self,
        version: int,
        kind: int,
        flags: int,
        sid: int,
        length: int,
        view: memoryview,
        pos: int,
        end: int,
        now: float,
        events: list[Event],
    ) -> int:
        """Handle one frame whose header was just read (its payload starts at ``pos``); return
        the position after the part of it that ``view`` holds."""
        if version != MUX_VERSION:
            raise ProtocolError(f"frame version {version}, this session speaks {MUX_VERSION}")
        if kind == _DATA:
            return self._data(flags, sid, length, view, pos, end, now, events)
        if kind == _WINDOW_UPDATE:
            self._window_update(sid, flags, length, now, events)
        elif kind == _PING:
            self._ping(sid, flags, length, now, events)
        elif kind == _GO_AWAY:
            if length > MAX_GO_AWAY_PAYLOAD:
                raise ProtocolError(f"GO_AWAY of {length} bytes exceeds {MAX_GO_AWAY_PAYLOAD}")
            if sid or flags & KNOWN_FLAGS:
                raise ProtocolError("GO_AWAY must travel on stream 0 without flags")
            if end - pos < length:
                self._stash += view[pos - HEADER_SIZE : end]
                return end
            code, message = decode_go_away(view[pos : pos + length])
            self._remote_go_away = True
            events.append(GoAwayReceived(code, message))
            return pos + length
        else:
            raise ProtocolError(f"unknown frame type {kind:#x}")
        return pos

    def _data(
        self,
        flags: int,
        sid: int,
        length: int,
        view: memoryview,
        pos: int,
        end: int,
        now: float,
        events: list[Event],
    ) -> int:
        if length > MAX_DATA_PAYLOAD:
            raise ProtocolError(f"DATA frame of {length} bytes exceeds {MAX_DATA_PAYLOAD}")
        if flags & _RST:
            raise ProtocolError("RST on a DATA frame")
        if flags & _SYN:
            if end - pos < length:  # StreamOpened gets the SYN frame's payload whole
                self._stash += view[pos - HEADER_SIZE : end]
                return end
            self._open_inbound(sid, flags, 0, view[pos : pos + length], now, events)
            return pos + length
        st = self._streams.get(sid)
        if st is None:
            self._check_stale(sid, "DATA")  # a stream reset or finished: drop the bytes
            fin = False
        else:
            fin = self._account_data(st, flags, length, now, events)
        keep = st is not None
        avail = end - pos
        if avail >= length:
            if length and keep:
                events.append(DataReceived(sid, view[pos : pos + length]))
            if fin:
                events.append(StreamEnded(sid))
            return pos + length
        # The payload continues in later reads: deliver it piece by piece as it arrives.
        if avail and keep:
            events.append(DataReceived(sid, view[pos:end]))
        self._rx_left = length - avail
        self._rx_sid = sid if keep else 0
        self._rx_fin = fin
        return end
