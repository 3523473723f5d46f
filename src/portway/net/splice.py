"""Relay bytes between two transports with backpressure, half-close and reset propagation.

A :class:`Splice` joins two legs, ``a`` and ``b``; each leg is the :class:`asyncio.Protocol` of one
transport of plain bytes: a socket (TCP or TLS) or a stream of a version 2 session
(:class:`~portway.net.mux_transport.StreamTransport`). Where a plain socket meets a stream, or a
stream another stream, the faster direct joins of :mod:`portway.net.mux_socket` and
:mod:`portway.net.mux_bridge` are used instead; a splice carries what they cannot, such as an
exposing agent's TLS connection to an https target and its stream. Each read goes to the other
transport as it is, one ``write`` per read:

* half-close: a leg's EOF becomes ``write_eof`` on the other (a stream's FIN). A TLS socket cannot
  half-close; it is closed once both directions are done;
* reset: the other leg is aborted too. A stream carries the reason both ways: a leg whose stream
  was reset (``StreamResetError``) resets the other leg's stream with the same reason, and
  :meth:`Splice.reset` sends its own; a socket gets a TCP RST.

Nothing awaits: each read is handed to the other transport inside ``data_received``. Memory is
bounded: when the other transport's write buffer passes ``limit`` (a stream's send queue, its
session's ``HIGH_WATER``) and it calls ``pause_writing``, this leg stops reading until it
drains. A leg may attach later than the other (the target is connected before its stream is
handed over): what the early leg sends meanwhile is held, in order, and reading it pauses once
``limit`` bytes are held; everything is flushed when the late leg attaches.

Counters are plain ints (:attr:`Leg.bytes_in`), updated per read and read by whoever reports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from typing import cast

from portway.net.e2e import SecureTransport
from portway.net.mux_transport import StreamResetError, StreamTransport
from portway.wire.codes import Reason
from portway.wire.frames import Bytes

DEFAULT_LIMIT = 256 * 1024
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

    def __init__(self, splice: Splice, name: str) -> None:
        self.splice = splice
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.peer: Leg = self  # set by Splice right after construction
        self.bytes_in = 0
        """Bytes read from this transport."""
        self.eof_in = False  # the far end of this leg finished sending
        self.eof_out = False  # this leg's far end was told we finished sending
        self.pending: list[Bytes] = []  # held for this leg until it attaches
        self.pending_size = 0
        self.write_paused = False
        self.reading_paused = False
        self.lost = False

    def __repr__(self) -> str:
        return f"<Leg {self.name} in={self.bytes_in} transport={self.transport!r}>"

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
        self.splice._lost(self, exc.reason if isinstance(exc, StreamResetError) else Reason.RESET)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.splice._update_reading(self.peer)

    def resume_writing(self) -> None:
        self.write_paused = False
        self.splice._update_reading(self.peer)


class Splice:
    """Relay between leg ``a`` and leg ``b``; see the module docstring.

    Created by whoever pairs two transports (an exposing agent for its TLS target and the
    stream). Each leg gets its transport either as the protocol of a new connection
    (:meth:`connector`, or ``lambda: splice.a`` as a server factory) or by :meth:`attach` for a
    transport that already carried a handshake. Then await :meth:`wait_closed`, or pass
    ``on_close``; :attr:`result` is ``None`` after a clean finish (both directions reached EOF)
    or the :class:`Reason` of the reset.
    """

    def __init__(
        self,
        *,
        limit: int = DEFAULT_LIMIT,
        on_close: Callable[[Splice], None] | None = None,
    ) -> None:
        self.limit = limit
        self.a = Leg(self, "a")
        self.b = Leg(self, "b")
        self.a.peer, self.b.peer = self.b, self.a
        self.open = True
        """False once the splice finished or failed; transports are then closing."""
        self.result: Reason | None = None
        self._on_close = on_close
        self._closed: asyncio.Future[Reason | None] = asyncio.get_running_loop().create_future()

    @property
    def bytes_a_to_b(self) -> int:
        return self.a.bytes_in

    @property
    def bytes_b_to_a(self) -> int:
        return self.b.bytes_in

    def connector(self, leg: Leg) -> Callable[[], Leg]:
        """A protocol factory for ``loop.create_connection`` that makes ``leg`` the protocol.

        The exposing agent dials its target with it, then writes ``assign_ok`` and attaches the
        stream: whatever the target sent in between is held and follows ``assign_ok``. If the
        dial fails, the caller answers ``assign_error`` and calls :meth:`reset`.
        """
        return lambda: leg

    def attach(
        self, leg: Leg, transport: asyncio.Transport, initial: Bytes = b"", *, eof: bool = False
    ) -> None:
        """Hand an established transport (whose handshake is done) to ``leg``.

        ``initial`` holds bytes already read past the handshake (from
        :meth:`~portway.wire.messages.MessageReader.take_rest`); they are relayed first, then
        the transport's FIN if ``eof`` says it came already. Call it in the same callback or
        step that detached the transport, with no ``await`` in between.
        """
        transport.set_protocol(leg)
        self._attach(leg, transport, initial)
        if eof and self.open:
            self._got_eof(leg)

    def reset(self, reason: Reason = Reason.CLOSED) -> None:
        """Abort the connection from outside (tunnel paused or deleted, dial failed, shutdown).

        A stream leg is reset with ``reason`` (its peer reads it from the RST), a socket leg gets a
        TCP RST; a leg that attaches later is closed the same way at once.
        """
        self._fail(reason)

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
        leg.bytes_in += len(data)
        self._send(leg.peer, data)

    def _send(self, leg: Leg, data: Bytes) -> None:
        """Write ``data`` to ``leg``'s transport, or hold it until it attaches."""
        transport = leg.transport
        if transport is not None:
            transport.write(data)
            return
        # Copy a slice: the count stays exact and no large read buffer is kept alive.
        held = bytes(data) if isinstance(data, memoryview) else data
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
        if transport.can_write_eof():
            transport.write_eof()
        # A TLS socket cannot half-close; it is closed when both directions are done.

    def _maybe_finish(self) -> None:
        a, b = self.a, self.b
        if self.open and a.eof_in and b.eof_in and a.eof_out and b.eof_out:
            self.open = False
            for leg in (a, b):
                assert leg.transport is not None
                leg.transport.close()  # flushes what is buffered, then closes
            self._maybe_done()

    def _eof_received(self, leg: Leg) -> bool:
        if self.open:
            self._got_eof(leg)
        # TLS transports cannot stay half-open (asyncio warns if we ask); plain TCP can.
        return leg.transport is not None and leg.transport.get_extra_info("sslcontext") is None

    def _fail(self, reason: Reason) -> None:
        if not self.open:
            return
        self.open = False
        self.result = reason
        for leg in (self.a, self.b):
            leg.pending.clear()
            leg.pending_size = 0
            if leg.transport is not None and not leg.lost:
                self._kill(leg)
        self._maybe_done()

    def _kill(self, leg: Leg) -> None:
        """Close ``leg`` for a failed splice, telling its far end why when it is a stream."""
        transport = leg.transport
        assert transport is not None
        if transport.is_closing():
            return
        if isinstance(transport, StreamTransport | SecureTransport):
            transport.reset(self.result or Reason.RESET)  # the peer reads why from the RST
        else:
            hard_close(transport)

    def _lost(self, leg: Leg, reason: Reason) -> None:
        leg.lost = True
        if self.open:
            self._fail(reason)
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
