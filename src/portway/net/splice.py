"""Relay bytes between two transports with backpressure, half-close and reset propagation.

A :class:`Splice` joins two legs, ``a`` and ``b``; each leg is the :class:`asyncio.Protocol` of one
transport and is either *raw* (plain bytes, e.g. a visitor's or target's TCP socket) or *framed*
(a data channel speaking :mod:`portway.wire.stream`). All three pairings work:

* raw ↔ raw: bytes pass as is; half-close uses ``write_eof``;
* raw ↔ framed: payload is wrapped in chunk headers one way and unwrapped (as memoryview slices,
  no copy) the other way; EOF and reset travel as in-band markers;
* framed ↔ framed (the hub between a reaching and an exposing agent): every read is forwarded
  unchanged, one ``write`` per read and no re-encoding. Headers are still parsed, which costs a
  struct unpack per chunk and buys exact payload counters, EOF/reset awareness and rejection of a
  peer that breaks the framing.

Nothing awaits: each read is handed to the other transport inside ``data_received``. Memory is
bounded: when the other transport's write buffer passes ``limit`` (``pause_writing``), this leg
stops reading until it drains. A leg may attach later than the other (the visitor is connected
but the data channel is not ready yet): what the early leg sends meanwhile is held, in order, and
reading it pauses once ``limit`` bytes are held; everything is flushed when the late leg attaches.

Counters are plain ints (:attr:`Leg.bytes_in`), updated per read and read by whoever reports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable, Sequence
from typing import cast

from portway.net.mux_transport import StreamReset, StreamTransport
from portway.wire.codes import Reason
from portway.wire.errors import ProtocolError
from portway.wire.frames import Bytes
from portway.wire.stream import EOF_CHUNK, StreamDecoder, encode_chunks, encode_reset

DEFAULT_LIMIT = 256 * 1024
# A chunk header and a payload up to this size go out as one buffer: over TLS each buffer
# written is a record of its own, and a small read (an HTTP request, an answer) would
# otherwise cost two records, two encryptions and two calls into the TLS object.
JOIN_UP_TO = 16 * 1024
_LINGER_RESET = struct.pack("ii", 1, 0)


def hard_close(transport: asyncio.Transport) -> None:
    """Abort ``transport`` so the peer sees a TCP RST (ECONNRESET), not a clean FIN.

    Used to mirror a reset from the far side: a client must be able to tell a truncated reply
    from a complete one. Falls back to a plain abort where the socket is not reachable.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.abort()


class Leg(asyncio.Protocol):
    """One transport of a :class:`Splice`. Created by the splice; used as the protocol for
    ``create_connection``/``create_server`` or adopted with :meth:`Splice.attach`."""

    def __init__(self, splice: Splice, name: str, *, framed: bool) -> None:
        self.splice = splice
        self.name = name
        self.framed = framed
        self.transport: asyncio.Transport | None = None
        self.peer: Leg = self  # set by Splice right after construction
        self.decoder = StreamDecoder() if framed else None
        self.bytes_in = 0
        """Payload bytes read from this transport (framing excluded)."""
        self.eof_in = False  # the far end of this leg finished sending
        self.eof_out = False  # this leg's far end was told we finished sending
        self.pending: list[Bytes] = []  # held for this leg until it attaches
        self.pending_size = 0
        self.write_paused = False
        self.reading_paused = False
        self.lost = False
        self.clean_boundary = True  # our last write ended between chunks (framed legs)
        self.reset_forwarded = False  # a RESET marker already reached this leg in-band
        # Takes this leg's data channel after a clean finish (`Splice.reuse`).
        self.keep: Callable[[asyncio.Transport, bytes], bool] | None = None

    def __repr__(self) -> str:
        kind = "framed" if self.framed else "raw"
        return f"<Leg {self.name} {kind} in={self.bytes_in} transport={self.transport!r}>"

    # -- asyncio callbacks ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so cast rather than check.
        self.splice._attach(self, cast(asyncio.Transport, transport), b"")

    def data_received(self, data: bytes) -> None:
        self.splice._received(self, data)

    def eof_received(self) -> bool:
        return self.splice._eof_received(self)

    def connection_lost(self, exc: Exception | None) -> None:
        # A stream's reset carries its reason: the other leg is reset with the same one.
        self.splice._lost(self, exc.reason if isinstance(exc, StreamReset) else Reason.RESET)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.splice._update_reading(self.peer)

    def resume_writing(self) -> None:
        self.write_paused = False
        self.splice._update_reading(self.peer)


class Splice:
    """Relay between leg ``a`` and leg ``b``; see the module docstring.

    Created by whoever pairs two connections (the hub for a visitor and a data channel, an agent
    for a channel and its target). Each leg gets its transport either as the protocol of a new
    connection (:meth:`connector`, or ``lambda: splice.a`` as a server factory) or by
    :meth:`attach` for a transport that already carried a handshake. Then await
    :meth:`wait_closed`, or pass ``on_close``; :attr:`result` is ``None`` after a clean finish
    (both directions reached EOF) or the :class:`Reason` of the reset.
    """

    def __init__(
        self,
        *,
        a_framed: bool = False,
        b_framed: bool = False,
        limit: int = DEFAULT_LIMIT,
        on_close: Callable[[Splice], None] | None = None,
    ) -> None:
        self.limit = limit
        self.a = Leg(self, "a", framed=a_framed)
        self.b = Leg(self, "b", framed=b_framed)
        self.a.peer, self.b.peer = self.b, self.a
        self.open = True
        """False once the splice finished or failed; transports are then closing."""
        self.result: Reason | None = None
        self._on_close = on_close
        self._closed: asyncio.Future[Reason | None] = asyncio.get_running_loop().create_future()

    def reuse(self, leg: Leg, keep: Callable[[asyncio.Transport, bytes], bool]) -> None:
        """Offer ``leg``'s data channel for another assignment when this splice ends cleanly.

        Call before ``leg`` attaches; ``leg`` must be framed. Both legs of a framed ↔ framed
        splice (the hub between a reaching and an exposing agent) may be offered, each to its
        own pool. After both directions reached EOF without a reset, ``keep(transport, rest)``
        is called instead of closing the channel: ``rest`` holds bytes read after the far end's
        EOF (the start of its next use), never relayed. It must adopt the transport at once
        (``set_protocol``) and return True, or return False to have the channel closed.
        """
        if not leg.framed or leg.transport is not None:
            raise ValueError("only a framed leg, before it attaches, is reusable")
        leg.decoder = StreamDecoder(stop_at_eof=True)
        leg.keep = keep

    @property
    def bytes_a_to_b(self) -> int:
        return self.a.bytes_in

    @property
    def bytes_b_to_a(self) -> int:
        return self.b.bytes_in

    def connector(self, leg: Leg) -> Callable[[], Leg]:
        """A protocol factory for ``loop.create_connection`` that makes ``leg`` the protocol.

        The exposing agent dials its target with it, then writes ``assign_ok`` and attaches the
        data channel: whatever the target sent in between is held and follows ``assign_ok``. If
        the dial fails, the caller answers ``assign_error`` and calls :meth:`reset`.
        """
        return lambda: leg

    def attach(self, leg: Leg, transport: asyncio.Transport, initial: Bytes = b"") -> None:
        """Hand an established transport (whose handshake is done) to ``leg``.

        ``initial`` holds bytes already read past the handshake (from
        :meth:`~portway.wire.messages.MessageReader.take_rest`); they are relayed first. Call it
        in the same callback or step that detached the transport, with no ``await`` in between.
        """
        transport.set_protocol(leg)
        self._attach(leg, transport, initial)

    def reset(self, reason: Reason = Reason.CLOSED) -> None:
        """Abort the connection from outside (tunnel paused or deleted, dial failed, shutdown).

        Framed legs get a RESET marker with ``reason``, raw legs a TCP RST; a leg that attaches
        later is closed the same way at once.
        """
        self._fail(reason, None)

    async def wait_closed(self) -> Reason | None:
        """Wait until every attached transport is closed; return :attr:`result`."""
        return await asyncio.shield(self._closed)

    # -- internals, called by Leg ------------------------------------------------------------------

    def _attach(self, leg: Leg, transport: asyncio.Transport, initial: Bytes) -> None:
        if leg.transport is not None:
            raise RuntimeError(f"leg {leg.name} is already attached")
        leg.transport = transport
        if not self.open:
            # Too late (the splice was reset meanwhile): close it at once, and let wait_closed
            # cover this transport too.
            if self._closed.done():
                self._closed = asyncio.get_running_loop().create_future()
            self._kill(leg)
            return
        transport.set_write_buffer_limits(high=self.limit)
        if leg.pending:
            held, leg.pending, leg.pending_size = leg.pending, [], 0
            transport.writelines(held)
        if leg.peer.eof_in:
            self._send_eof(leg)
        self._update_reading(leg.peer)
        if initial:
            self._received(leg, initial)
        self._maybe_finish()

    def _received(self, leg: Leg, data: Bytes) -> None:
        if not self.open:
            return
        peer = leg.peer
        decoder = leg.decoder
        if decoder is None:
            leg.bytes_in += len(data)
            self._send(peer, encode_chunks(data) if peer.framed else [data])
            return
        try:
            slices = decoder.feed(data)
        except ProtocolError:
            self._fail(Reason.PROTOCOL_ERROR, leg)
            return
        for piece in slices:
            leg.bytes_in += len(piece)
        if peer.framed:  # pass through unchanged, markers included
            if decoder.rest:  # a reusable leg's next use began after its EOF: not ours to relay
                data = data[: len(data) - len(decoder.rest)] if not leg.eof_in else b""
            if data:
                self._send(peer, [data])
            peer.clean_boundary = decoder.at_boundary
            peer.reset_forwarded = decoder.reset is not None
        elif slices:
            self._send(peer, slices)
        if decoder.eof and not leg.eof_in:
            self._got_eof(leg)
        if decoder.reset is not None:
            self._fail(decoder.reset, leg)

    def _send(self, leg: Leg, parts: Sequence[Bytes]) -> None:
        """Write ``parts`` to ``leg``'s transport, or hold them until it attaches."""
        transport = leg.transport
        if transport is not None:
            if len(parts) == 1:
                transport.write(parts[0])
            elif len(parts) == 2 and len(parts[1]) <= JOIN_UP_TO:
                transport.write(b"".join(parts))
            elif parts:
                transport.writelines(parts)
            return
        for part in parts:
            # Copy slices: the count stays exact and no large read buffer is kept alive.
            held = bytes(part) if isinstance(part, memoryview) else part
            leg.pending.append(held)
            leg.pending_size += len(held)
        if leg.pending_size >= self.limit:
            self._update_reading(leg.peer)

    def _update_reading(self, leg: Leg) -> None:
        """Pause or resume reading ``leg`` depending on whether its peer can take more."""
        transport = leg.transport
        if transport is None or leg.eof_in or not self.open or transport.is_closing():
            return
        peer = leg.peer
        blocked = peer.write_paused or (peer.transport is None and peer.pending_size >= self.limit)
        if blocked and not leg.reading_paused:
            leg.reading_paused = True
            transport.pause_reading()
        elif not blocked and leg.reading_paused:
            leg.reading_paused = False
            transport.resume_reading()

    def _got_eof(self, leg: Leg) -> None:
        leg.eof_in = True
        if leg.peer.transport is not None:
            self._send_eof(leg.peer)
        self._maybe_finish()

    def _send_eof(self, leg: Leg) -> None:
        if leg.eof_out:
            return
        leg.eof_out = True
        transport = leg.transport
        assert transport is not None
        if leg.framed:
            if not leg.peer.framed:  # pass-through already forwarded the peer's EOF marker
                transport.write(EOF_CHUNK)
        elif transport.can_write_eof():
            transport.write_eof()
        # A raw TLS leg cannot half-close; it is closed when both directions are done.

    def _maybe_finish(self) -> None:
        a, b = self.a, self.b
        if self.open and a.eof_in and b.eof_in and a.eof_out and b.eof_out:
            self.open = False
            for leg in (a, b):
                assert leg.transport is not None
                if leg.keep is not None and self._hand_over(leg, leg.transport):
                    continue
                leg.transport.close()  # flushes what is buffered, then closes
            self._maybe_done()

    def _hand_over(self, leg: Leg, transport: asyncio.Transport) -> bool:
        """Give a cleanly finished channel to its reuse callback; True if it was taken."""
        assert leg.keep is not None and leg.decoder is not None
        if transport.is_closing():
            return False
        if leg.reading_paused:
            leg.reading_paused = False
            transport.resume_reading()
        if not leg.keep(transport, leg.decoder.rest):
            return False
        leg.lost = True  # no longer ours: the splice is done once the other leg closes
        return True

    def _eof_received(self, leg: Leg) -> bool:
        if leg.framed:
            # A channel ends only after both in-band EOFs; a transport EOF before that means the
            # peer went away mid-stream.
            if self.open:
                self._fail(Reason.RESET, leg)
            return False
        if self.open:
            self._got_eof(leg)
        # TLS transports cannot stay half-open (asyncio warns if we ask); plain TCP can.
        return leg.transport is not None and leg.transport.get_extra_info("sslcontext") is None

    def _fail(self, reason: Reason, origin: Leg | None) -> None:
        if not self.open:
            return
        self.open = False
        self.result = reason
        for leg in (self.a, self.b):
            leg.pending.clear()
            leg.pending_size = 0
            if leg.transport is not None and not leg.lost:
                self._kill(leg, origin_reset=leg is origin and reason is not Reason.PROTOCOL_ERROR)
        self._maybe_done()

    def _kill(self, leg: Leg, *, origin_reset: bool = False) -> None:
        """Close ``leg`` for a failed splice, telling its far end why when the format allows."""
        transport = leg.transport
        assert transport is not None
        if transport.is_closing():
            return
        if leg.framed and (origin_reset or leg.reset_forwarded):
            transport.close()  # the far end sent or already received the RESET marker
        elif leg.framed and leg.clean_boundary:
            assert self.result is not None
            transport.write(encode_reset(self.result))
            transport.close()
        elif isinstance(transport, StreamTransport):
            transport.reset(self.result or Reason.RESET)  # the peer reads why from the RST
        else:
            hard_close(transport)

    def _lost(self, leg: Leg, reason: Reason) -> None:
        leg.lost = True
        if self.open:
            self._fail(reason, leg)
        else:
            self._maybe_done()

    def _maybe_done(self) -> None:
        if self._closed.done():
            return
        if all(leg.lost or leg.transport is None for leg in (self.a, self.b)):
            self._closed.set_result(self.result)
            if self._on_close is not None:
                on_close, self._on_close = self._on_close, None
                on_close(self)
