"""Sans-IO session of the multiplexed data plane (wire version 2): many streams, one connection.

Header layout and constants: :mod:`portway.wire.mux_frames`; window arithmetic:
:mod:`portway.wire.flow`. This module is the state machine both ends run, the agent (which dialled
the connection, ``client=True``, opens odd stream ids) and the hub (``client=False``, even ids).

The owner (an asyncio protocol in :mod:`portway.net`) drives it like this::

    events = session.receive_data(data, now)   # from data_received; act on every event
    for ev in events: ...                      # write DataReceived to its destination socket,
                                               # then session.consumed(id, n, now) once taken
    transport.writelines(session.data_to_send())   # after *every* call that changes state
    for stream_id in session.writable_streams(): resume reading that stream's source

and, for each local source socket: ``session.send(id, chunk)``, then pause reading it while
``session.send_buffered(id) > HIGH_WATER`` (resume when :meth:`MuxSession.writable_streams`
names it). ``data_to_send`` yields at most ``max_bytes`` of stream data per call: call it again
(until it returns ``[]``) whenever the transport can take more, e.g. from ``resume_writing``.

Errors: a peer that breaks the protocol makes :meth:`MuxSession.receive_data` raise
:class:`~portway.wire.errors.ProtocolError` (``code`` is ``"protocol_error"`` or
``"flow_control_error"``). Before raising, the session queues a ``GO_AWAY`` with that code and
drops everything else: the owner writes ``data_to_send()`` once more and closes the transport.
The session is then closed for good: ``receive_data`` raises the same error again,
``open_stream`` raises :class:`SessionClosed`, ``data_to_send`` returns ``[]`` once the
``GO_AWAY`` went out, and every other method is a no-op. Events decoded from the same call before
the offending frame are lost; the owner tears every stream down anyway.

Decisions where the design left room (see also the module docs of ``flow`` and ``mux_frames``):

* Inbound streams are accepted automatically; the ``ACK`` rides on the first frame this side
  sends for the stream (``DATA`` if any goes out in the same call, otherwise a
  ``WINDOW_UPDATE``). A SYN is refused with ``RST`` (code :data:`RESET_LIMIT`) beyond
  ``max_streams`` live inbound streams, beyond ``syn_rate`` accepted SYNs per second (token
  bucket, burst = one second's worth), or when the budget cannot hold another
  :data:`INITIAL_WINDOW`; after a local :meth:`MuxSession.go_away`, every SYN is refused with
  ``Reason.CLOSED``. Refusal is never a session error.
* Every live stream reserves its receive window from the budget, locally opened ones too:
  :meth:`MuxSession.open_stream` raises :class:`LimitReached` when the budget is full (open the
  stream on another session). With the defaults (64 MiB / 256 KiB) that is 256 streams whose
  peer has not finished sending; a direction the peer has finished (FIN) only holds what the
  application has not consumed yet.
* The first frame from the peer on a stream this side opened must carry ``ACK`` (or be an
  ``RST``: a refusal). A frame on a stream id at or below the highest one opened, but no longer
  live (reset or finished), is ignored: it crossed a reset on the wire.
* After this side sent or received ``GO_AWAY``, ``open_stream`` raises :class:`SessionClosed`.
  A SYN from a peer after its own ``GO_AWAY`` is a protocol error.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Final, TypeAlias

from portway.errors import Unavailable
from portway.wire.codes import Reason
from portway.wire.errors import ProtocolError
from portway.wire.flow import (
    DEFAULT_BUDGET,
    INITIAL_WINDOW,
    MAX_WINDOW,
    MemoryBudget,
    ReceiveWindow,
    RttEstimator,
    TokenBucket,
)
from portway.wire.frames import Bytes
from portway.wire.mux_frames import (
    HEADER,
    HEADER_SIZE,
    KNOWN_FLAGS,
    MAX_DATA_PAYLOAD,
    MAX_GO_AWAY_PAYLOAD,
    MAX_U32,
    MUX_VERSION,
    RESET_LIMIT,
    Flag,
    FrameType,
    GoAwayCode,
    decode_go_away,
    encode_go_away,
    encode_ping,
    encode_reset,
)

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_SEND_SIZE",
    "DEFAULT_SYN_RATE",
    "HIGH_WATER",
    "INITIAL_WINDOW",
    "LOW_WATER",
    "MAX_WINDOW",
    "QUANTUM",
    "RESET_LIMIT",
    "DataReceived",
    "Event",
    "GoAwayCode",
    "GoAwayReceived",
    "LimitReached",
    "MuxError",
    "MuxSession",
    "PingAcked",
    "SendWindowOpened",
    "SessionClosed",
    "StreamAccepted",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
    "StreamStateError",
]

QUANTUM: Final = 16 * 1024
"""Bytes one stream may send per round-robin turn while other streams wait."""
HIGH_WATER: Final = 256 * 1024
"""The owner stops reading a stream's source once its :meth:`MuxSession.send_buffered` exceeds
this."""
LOW_WATER: Final = HIGH_WATER // 2
"""... and resumes once it is back at or below this (reported by ``writable_streams``)."""
DEFAULT_SEND_SIZE: Final = 256 * 1024
DEFAULT_MAX_STREAMS: Final = 4096
DEFAULT_SYN_RATE: Final = 20_000.0
"""New streams a second a session accepts from its peer by default (burst: one second's worth);
the hub sets its own, lower, rate for streams that agents open."""
MAX_PENDING_PONGS: Final = 256
"""Pings beyond this many answered-but-unsent replies go unanswered (a flood, not a peer)."""
MAX_OUTSTANDING_PINGS: Final = 16

_DATA: Final = int(FrameType.DATA)
_WINDOW_UPDATE: Final = int(FrameType.WINDOW_UPDATE)
_PING: Final = int(FrameType.PING)
_GO_AWAY: Final = int(FrameType.GO_AWAY)
_SYN: Final = int(Flag.SYN)
_ACK: Final = int(Flag.ACK)
_FIN: Final = int(Flag.FIN)
_RST: Final = int(Flag.RST)
_COPY_LIMIT: Final = 4096  # a frame crossing a queued buffer joins pieces only below this size
_EMPTY: Final = memoryview(b"")
_pack = HEADER.pack
_unpack = HEADER.unpack_from


# -- events ------------------------------------------------------------------------------------
#
# ``data`` fields are memoryviews of the buffer passed to receive_data (no copy). asyncio's
# data_received passes immutable bytes, so they stay valid as long as they are referenced (and
# keep that whole buffer alive); a caller feeding a reused bytearray must use or copy them before
# its next read.


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened ``stream_id`` (already accepted); ``data`` is what rode on its SYN frame.

    The owner connects the stream to its destination and writes ``data`` there (then reports it
    with ``consumed``); later bytes come as :class:`DataReceived`. To refuse it: ``reset_stream``.
    """

    stream_id: int
    data: memoryview


@dataclass(frozen=True, slots=True)
class StreamAccepted:
    """The peer accepted a stream this side opened."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Stream bytes, in order. The owner writes them to the destination and, once taken, calls
    ``consumed(stream_id, len(data), now)``: until then they count against the window."""

    stream_id: int
    data: memoryview


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer sent FIN: no more data on this stream from it (the owner may half-close)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The peer aborted the stream (``code`` is a :class:`~portway.wire.codes.Reason` byte, or
    :data:`RESET_LIMIT`); its state is already gone, queued data was dropped."""

    stream_id: int
    code: int


@dataclass(frozen=True, slots=True)
class SendWindowOpened:
    """The peer gave credit to a stream whose send window was exhausted: queued data can move
    again on the next ``data_to_send``."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PingAcked:
    """The reply to one of our pings; ``rtt`` is this sample (``session.rtt`` is smoothed)."""

    rtt: float


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer is shutting the session down; ``code`` is a :class:`GoAwayCode` when known.

    No new streams may be opened on this session; existing ones may finish. A non-normal code
    usually means the peer closes the connection right after.
    """

    code: int
    message: str


Event: TypeAlias = (
    StreamOpened
    | StreamAccepted
    | DataReceived
    | StreamEnded
    | StreamReset
    | SendWindowOpened
    | PingAcked
    | GoAwayReceived
)


# -- local errors (misuse by the owner; the peer's errors are ProtocolError) --------------------


class MuxError(Unavailable):
    """The owner asked for something the session cannot do."""


class SessionClosed(MuxError):
    """No new stream: a ``GO_AWAY`` was sent or received, or the session failed."""


class LimitReached(MuxError):
    """No new stream: the memory budget is full or stream ids are exhausted."""


class StreamStateError(MuxError):
    """The stream id was never opened, or this side already ended it."""


class _Stream:
    __slots__ = (
        "ack_pending",
        "acked",
        "buffered",
        "dead",
        "fin_queued",
        "fin_sent",
        "head_off",
        "id",
        "in_ready",
        "local",
        "over_high",
        "queue",
        "remote_fin",
        "rx",
        "send_window",
        "syn_pending",
    )

    def __init__(self, stream_id: int, *, local: bool) -> None:
        self.id = stream_id
        self.local = local
        self.syn_pending = local  # ours, SYN not framed yet
        self.acked = not local  # ours: the peer has ACKed
        self.ack_pending = False  # theirs: ACK not framed yet
        self.send_window = INITIAL_WINDOW
        self.queue: collections.deque[Bytes] = collections.deque()
        self.head_off = 0  # bytes of queue[0] already framed
        self.buffered = 0  # queued, not yet framed
        self.fin_queued = False
        self.fin_sent = False
        self.remote_fin = False
        self.in_ready = False
        self.over_high = False
        self.dead = False
        self.rx = ReceiveWindow()


class MuxSession:
    """One v2 session (either end). Not thread-safe; one owner drives every call.

    ``client`` is True on the side that dialled the connection (the agent). ``budget`` caps the
    sum of receive windows, ``max_streams`` the live streams the peer opened, ``syn_rate`` the
    streams per second the peer may open (excess SYNs are refused with an ``RST``).
    """

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
        self._streams: dict[int, _Stream] = {}
        self._inbound = 0
        # outbound
        self._control: list[Bytes] = []  # whole session frames: pongs, pings, GO_AWAY, RSTs
        self._pending_pongs = 0
        self._ctl: dict[int, _Stream] = {}  # streams that may owe a WINDOW_UPDATE/ACK/FIN
        self._syn_queue: collections.deque[_Stream] = collections.deque()
        self._ready: collections.deque[_Stream] = collections.deque()
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

    # -- introspection ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the peer broke the protocol (see :attr:`error`)."""
        return self._error is not None

    @property
    def error(self) -> ProtocolError | None:
        return self._error

    @property
    def going_away(self) -> bool:
        """True once a ``GO_AWAY`` was sent or received: no new streams on this session."""
        return self._local_go_away or self._remote_go_away

    @property
    def rtt(self) -> float | None:
        """Smoothed round-trip time from answered pings; None before the first answer."""
        return self._rtt.smoothed

    @property
    def stream_count(self) -> int:
        """Live streams (either side opened). With :attr:`going_away`, 0 means the owner may
        close the connection once ``data_to_send`` is empty."""
        return len(self._streams)

    @property
    def budget_reserved(self) -> int:
        """How far the live streams' receive windows grew beyond :data:`INITIAL_WINDOW`."""
        return self._budget.reserved

    def stream_ids(self) -> list[int]:
        return list(self._streams)

    def send_buffered(self, stream_id: int) -> int:
        """Bytes queued by :meth:`send` and not yet framed (0 for a stream that is gone)."""
        st = self._streams.get(stream_id)
        return st.buffered if st is not None else 0

    def send_window(self, stream_id: int) -> int:
        """Credit the peer has granted for this stream (0 for a stream that is gone)."""
        st = self._streams.get(stream_id)
        return st.send_window if st is not None else 0

    def receive_window(self, stream_id: int) -> int:
        """This side's current receive window for the stream (grows with auto-tuning)."""
        st = self._streams.get(stream_id)
        return st.rx.size if st is not None else 0

    @property
    def has_data_to_send(self) -> bool:
        """True when :meth:`data_to_send` may return something (possibly a false positive)."""
        return bool(self._control or self._ctl or self._syn_queue or self._go_away or self._ready)

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
        st = _Stream(sid, local=True)
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
    def _take(st: _Stream, n: int) -> Bytes:
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

    # -- inbound ---------------------------------------------------------------------------------

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

    def _account_data(
        self, st: _Stream, flags: int, length: int, now: float, events: list[Event]
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
        st = _Stream(sid, local=False)
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

    def _check_ack(self, st: _Stream, flags: int, events: list[Event]) -> None:
        """The peer's first frame on a stream this side opened must accept it (ACK)."""
        if flags & _ACK:
            if st.acked or st.syn_pending:
                raise ProtocolError(f"unexpected ACK on stream {st.id}")
            st.acked = True
            events.append(StreamAccepted(st.id))
        elif not st.acked:
            raise ProtocolError(f"frame on stream {st.id} before its ACK")

    def _remote_fin(self, st: _Stream) -> None:
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

    def _free(self, st: _Stream) -> None:
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
