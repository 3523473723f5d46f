"""Message-level connection for control sessions and data-channel handshakes.

:class:`FramedConnection` is the asyncio protocol of an agent-port connection while it speaks
frames: ``await recv()`` returns the next :mod:`portway.wire.messages` message, ``send()`` writes
some. Control traffic is low rate, so one await per message is fine; the per-byte hot path never
comes here. A data channel, once assigned, leaves this class with :meth:`FramedConnection.detach`
and is handed to a :class:`~portway.net.splice.Splice` together with any bytes already read.

:func:`connect` is the agent side (dial, preface, hello); :func:`serve` is the hub side (accept,
expect a preface, run a handler per connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from typing import cast

from portway.net.mux_transport import StreamTransport
from portway.net.tls import remember_session
from portway.wire.errors import ProtocolError
from portway.wire.frames import MAX_HELLO_PAYLOAD, PREFACE
from portway.wire.messages import Message, MessageReader, encode


class ConnectionClosed(ConnectionError):
    """The connection ended (EOF, error, or :meth:`FramedConnection.close`) before a message."""


class FramedConnection(asyncio.Protocol):
    """Protocol of one agent-port connection in its framed phase. See the module docstring.

    ``expect_preface`` on the hub side (the first bytes must be the preface; :attr:`version`
    then holds the agent's version), ``send_preface`` on the agent side. ``max_payload`` starts at
    the pre-authentication limit; the hub raises :attr:`reader`'s limit after a valid hello.
    """

    def __init__(
        self,
        *,
        expect_preface: bool = False,
        send_preface: bool = False,
        max_payload: int = MAX_HELLO_PAYLOAD,
        on_connect: Callable[[FramedConnection], None] | None = None,
    ) -> None:
        self.reader = MessageReader(max_payload=max_payload, expect_preface=expect_preface)
        self.transport: asyncio.Transport | None = None
        self.on_lost: Callable[[FramedConnection], None] | None = None
        """Called once when the connection closes while still framed (not after detach): the
        hub's pool sets it to forget an idle channel that died."""
        self._send_preface = send_preface
        self._on_connect = on_connect
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._data_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._lost_exc: Exception | None = None
        self._paused = False
        self._seen_data = False
        self._detached = False

    @classmethod
    def adopt(cls, transport: asyncio.Transport, rest: bytes) -> FramedConnection:
        """Frame a channel again after its splice ended cleanly (a reused data channel).

        Called by a :meth:`Splice.reuse <portway.net.splice.Splice.reuse>` callback with the
        transport and the bytes read after the peer's EOF; the connection is framed from here
        on, exactly as after its hello.
        """
        conn = cls()
        conn._seen_data = True  # the TLS session was remembered on its first use
        transport.set_protocol(conn)
        conn.connection_made(transport)
        if rest:
            conn.data_received(rest)
        return conn

    @property
    def version(self) -> int | None:
        """The peer's protocol version (hub side, once the preface has been read)."""
        return self.reader.frames.version

    # -- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so cast rather than check.
        self.transport = transport = cast(asyncio.Transport, transport)
        if self._send_preface:
            transport.write(PREFACE)
        if self._on_connect is not None:
            self._on_connect(self)

    def data_received(self, data: bytes) -> None:
        if not self._seen_data:
            self._seen_data = True
            # TLS 1.3 session tickets arrive just before the peer's first bytes.
            remember_session(self.transport)
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
        if self.on_lost is not None and not self._detached:
            self.on_lost(self)

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

        Called right after :meth:`recv` returned ``Assign`` (agent) or ``AssignOk`` (hub); pass
        both to :meth:`Splice.attach <portway.net.splice.Splice.attach>` before any ``await``.
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
        transport then belongs to a splice (await the splice instead)."""
        if self.transport is not None and not self._detached:
            await asyncio.shield(self._closed)


async def connect(
    host: str,
    port: int,
    *,
    hello: Message,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    max_payload: int = MAX_HELLO_PAYLOAD,
) -> FramedConnection:
    """Agent side: open a connection to the hub's agent port and send preface and hello.

    Returns at once, without waiting for the reply: the caller awaits ``recv()`` for ``welcome``
    or ``refused`` (control) or parks the channel in its pool (data). Raises ``OSError`` when the
    hub cannot be reached and ``ssl.SSLError`` when its certificate does not match the pin.
    """
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(
        lambda: FramedConnection(send_preface=True, max_payload=max_payload),
        host,
        port,
        ssl=ssl_context,
        server_hostname=server_hostname if ssl_context is not None else None,
    )
    conn.send(hello)
    return conn


class FramedServer:
    """Hub side listener: every accepted connection becomes a :class:`FramedConnection`
    (preface expected) handed to ``handler`` in a task of its own. Created by :func:`serve`."""

    def __init__(self, handler: Callable[[FramedConnection], Awaitable[None]]) -> None:
        self._handler = handler
        self._tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    def _factory(self) -> FramedConnection:
        return FramedConnection(expect_preface=True, on_connect=self._start)

    def _start(self, conn: FramedConnection) -> None:
        # Started from connection_made, so a failed TLS handshake leaves no task behind.
        task = asyncio.get_running_loop().create_task(self._run(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, conn: FramedConnection) -> None:
        try:
            await self._handler(conn)
        except (ProtocolError, ConnectionError):
            conn.abort()  # the handler did not deal with it: drop the peer
        except BaseException:
            conn.abort()
            raise

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> FramedServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop accepting, cancel running handlers and wait for them (not for detached
        transports, which belong to their splices)."""
        assert self.server is not None
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.server.wait_closed()


async def serve(
    handler: Callable[[FramedConnection], Awaitable[None]],
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> FramedServer:
    """Listen on ``host:port`` and run ``handler(conn)`` for each agent connection.

    The handler reads the hello with ``await conn.recv()`` and either keeps the connection (a
    control session loop, or a data channel parked in a pool) or closes it. When it returns the
    connection is left as it is; :class:`ProtocolError` or ``ConnectionError`` escaping it aborts
    the connection.
    """
    framed = FramedServer(handler)
    framed.server = await asyncio.get_running_loop().create_server(
        framed._factory, host, port, ssl=ssl_context
    )
    return framed
