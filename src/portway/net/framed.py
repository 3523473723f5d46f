"""Message level of a stream's framed phase: the control stream, and each assignment's opening.

:class:`FramedConnection` is the asyncio protocol of a version 2 stream, over its
:class:`~portway.net.mux_transport.StreamTransport`, while the stream carries
:mod:`portway.wire.messages` frames: ``await recv()`` returns the next message, ``send()`` writes
some. Stream 1 of a session (hello, then welcome or refused, desired state, pings) is framed for
its whole life; a stream the hub opens for an ``assign`` (the edge's, reach, UDP, diagnostics)
is framed until the answer (``assign_ok``, ``assign_error`` or ``diagnosis``). An assigned stream
then leaves this class with :meth:`FramedConnection.detach` and goes to its relay with any bytes
already read. Control traffic is low rate, so one await per message is fine; the per-byte hot
path never comes here, nor does a public port's stream (:mod:`portway.net.mux_opening` reads
its answer, and the ``assign`` at the agent, in callbacks).

The session's preface is read before any stream exists (:mod:`portway.net.agent_port`). Any
transport works; only a stream stays open after the peer's FIN, for the relay that follows.
"""

from __future__ import annotations

import asyncio
from typing import cast

from portway.errors import Unavailable
from portway.net.mux_transport import StreamTransport
from portway.wire.frames import MAX_HELLO_PAYLOAD
from portway.wire.messages import Message, MessageReader, encode


class ConnectionClosed(Unavailable, ConnectionError):
    """The connection ended (EOF, error, or :meth:`FramedConnection.close`) before a message.

    Raised by :meth:`FramedConnection.recv` and ``send``. Still a `ConnectionError`: callers that
    catch `OSError` around a session (`portway up`'s foreground runner) catch it too.
    """

    code = "connection_closed"


class FramedConnection(asyncio.Protocol):
    """Protocol of one stream in its framed phase. See the module docstring.

    ``max_payload`` starts at the pre-authentication limit; the hub raises :attr:`reader`'s limit
    after a valid hello.
    """

    def __init__(self, *, max_payload: int = MAX_HELLO_PAYLOAD) -> None:
        self.reader = MessageReader(max_payload=max_payload)
        self.transport: asyncio.Transport | None = None
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._data_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._lost_exc: Exception | None = None
        self._paused = False
        self._detached = False

    @property
    def at_eof(self) -> bool:
        """The peer finished sending (or the connection is gone); what was read may remain."""
        return self._eof

    # -- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so cast rather than check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        # Bound what an unread connection can make us hold: stop reading once a frame's worth is
        # buffered; recv() resumes when it needs more.
        if self.reader.frames.buffered > self.reader.frames.max_payload and not self._paused:
            self._paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        # A stream stays open: its next protocol (after `detach`) hears of the FIN too.
        return isinstance(self.transport, StreamTransport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._lost_exc = exc
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._drain_waiter = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        self._drain_waiter = None

    def _wake(self) -> None:
        if self._data_waiter is not None and not self._data_waiter.done():
            self._data_waiter.set_result(None)

    # -- API --------------------------------------------------------------------------------------

    async def recv(self) -> Message:
        """The next message from the peer.

        Raises :class:`ProtocolError` on malformed input (the caller answers with ``refused`` or
        ``goodbye`` where it can, then closes) and :class:`ConnectionClosed` when the connection
        ends first. Only one task may wait in ``recv`` at a time.
        """
        if self._data_waiter is not None:
            raise RuntimeError("another task is already waiting in recv()")
        while True:
            message = self.reader.next_message()
            if message is not None:
                return message
            if self._eof:
                raise ConnectionClosed("connection closed by peer") from self._lost_exc
            if self._paused and self.transport is not None:
                self._paused = False
                self.transport.resume_reading()
            self._data_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._data_waiter
            finally:
                self._data_waiter = None

    def send(self, *messages: Message) -> None:
        """Write ``messages`` (one write). Await :meth:`drain` in loops that may outpace the
        peer."""
        if self._detached:
            raise RuntimeError("the transport was detached: it carries a stream now")
        if self.transport is None or self.transport.is_closing():
            raise ConnectionClosed("connection is closed")
        data = b"".join(encode(m) for m in messages)
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its low-water mark."""
        waiter = self._drain_waiter
        if waiter is not None:
            await asyncio.shield(waiter)
        if self._lost_exc is not None or self._closed.done():
            raise ConnectionClosed("connection is closed")

    def detach(self) -> tuple[asyncio.Transport, bytes]:
        """Stop framing: return the transport and the bytes read after the last message pulled.

        Called right after the agent sent ``assign_ok`` or the hub's :meth:`recv` returned it; hand
        both to the stream's relay (:func:`~portway.net.mux_socket.hand_over`, or
        :meth:`Splice.attach <portway.net.splice.Splice.attach>`) before any ``await``.
        """
        if self.transport is None or self._detached:
            raise RuntimeError("nothing to detach")
        self._detached = True
        transport = self.transport
        if self._paused:
            self._paused = False
            transport.resume_reading()
        return transport, self.reader.take_rest()

    def close(self) -> None:
        """Close after writing what is buffered (for example after ``goodbye`` or ``refused``)."""
        if self.transport is not None and not self._detached:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self._detached:
            self.transport.abort()

    async def wait_closed(self) -> None:
        """Wait for ``connection_lost``; returns at once after :meth:`detach`, since the
        transport then belongs to its relay (await the relay instead)."""
        if self.transport is not None and not self._detached:
            await asyncio.shield(self._closed)
