"""The version 2 splice: a TCP socket joined to a stream of a session (:mod:`portway.net.mux`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from portway.net.mux import WRITE_LIMIT
from portway.net.mux_bridge import StreamBridge
from portway.net.mux_stream import MuxStream
from portway.net.mux_transport import StreamTransport
from portway.net.splice import Splice, hard_close
from portway.wire.codes import Reason
from portway.wire.mux_sending import HIGH_WATER


class SocketStream(asyncio.Protocol):
    """A plain TCP socket joined to a stream: the fast path of every proxied connection.

    The protocol of a visitor's or local client's accepted socket, or of the connection dialled
    to a target; :meth:`join` links it to its stream once the stream's opening is done (bytes
    read before that are held, in order, and reading pauses past ``HIGH_WATER``), or
    :meth:`link` sends its reads to the stream at once, before the peer's answer. Reads
    go to the stream as they come (kept by reference until framed); the stream's bytes are
    written to the socket, their credit returned while the socket's buffer is under its limit
    and from ``resume_writing`` otherwise. EOF travels as FIN both ways; a reset of either side
    is a reset of the other (an RST on the socket), with its reason.

    It is also what `Traffic` counts (``bytes_a_to_b`` is what the socket sent) and resets, and
    what a reaching agent keeps while it waits for its stream: :attr:`open`, :meth:`reset`,
    :attr:`result` (None after a clean finish) and ``on_close`` (called once, at the end).
    """

    def __init__(
        self,
        stream: MuxStream | None = None,
        *,
        on_close: Callable[[SocketStream], None] | None = None,
    ) -> None:
        self.stream = stream
        self.transport: asyncio.Transport | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.open = True
        self.result: Reason | None = None
        self._on_close = on_close
        self._early: list[bytes] = []
        self._early_size = 0
        self._early_eof = False
        self._linked = False  # reads go to the stream; its bytes come once it attaches this
        self._owed = 0  # credit held back while the socket's buffer is over its limit
        self._write_paused = False
        self._eof_in = False
        self._eof_out = False

    @property
    def bytes_a_to_b(self) -> int:
        return self.bytes_in

    @property
    def bytes_b_to_a(self) -> int:
        return self.bytes_out

    def join(self, stream: MuxStream, first: bytes = b"") -> None:
        """Link to ``stream`` and attach as its sink: ``first`` (the stream's bytes a framed
        reader read past its last message, and credited when it read them) goes to the socket
        first, then what the stream held; the socket's held reads go to the stream. A socket
        that was reset meanwhile resets the stream with the same reason."""
        self.stream = stream
        if not self.open:
            stream.reset(self.result or Reason.RESET)
            return
        if first and self.transport is not None:
            self.bytes_out += len(first)
            self.transport.write(first)
        stream.attach(self)
        self._send_early(stream)

    def link(self, stream: MuxStream) -> None:
        """Send this socket's reads to ``stream`` from now on, held ones first, while another
        sink reads the stream's first bytes: the hub's pairing of a visitor, until the agent
        answers the ``assign`` these reads follow. That sink then attaches this socket
        (``stream.attach``), or resets it. Called by the visitor's protocol factory, before
        ``connection_made``."""
        self.stream = stream
        self._linked = True
        if self.transport is not None:
            self._send_early(stream)

    def _send_early(self, stream: MuxStream) -> None:
        early, self._early = self._early, []
        for data in early:
            stream.write(data)
        if self._early_eof:
            stream.write_eof()
        if self._early_size > HIGH_WATER and self.transport is not None:
            self.transport.resume_reading()  # the stream pauses it again if it must
        self._early_size = 0

    def detach(self) -> tuple[asyncio.Transport, bytes, bool] | None:
        """Give up the socket before it joined a stream, for a relay that carries it through
        another layer (a reaching agent's end-to-end TLS, `agent.end_to_end`): its transport,
        reading resumed, the bytes read and held so far and whether its FIN came; None when it
        is gone already. The caller makes itself the transport's protocol in the same step."""
        transport = self.transport
        if not self.open or transport is None or self.stream is not None:
            return None
        held = b"".join(self._early)
        eof, paused = self._early_eof, self._early_size > HIGH_WATER
        self._early, self._early_size = [], 0
        self.open, self._on_close = False, None  # nothing to report: the new relay reports
        self.transport = None
        if paused:
            transport.resume_reading()
        return transport, held, eof

    def reset(self, reason: Reason = Reason.CLOSED) -> None:
        """Abort from outside (tunnel paused or deleted, no stream to be had, shutdown): RST on
        the socket, and on the stream with ``reason``."""
        if not self.open:
            return
        if self.stream is not None:
            self.stream.reset(reason)
        if self.transport is not None:
            hard_close(self.transport)
        self._finish(reason)

    # -- the socket ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=WRITE_LIMIT)
        if not self.open:
            hard_close(transport)  # reset before the socket was even made
        elif self.stream is not None and not self._linked:
            self.join(self.stream)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self.stream is None:
            self._early.append(data)
            self._early_size += len(data)
            if self._early_size > HIGH_WATER and self.transport is not None:
                self.transport.pause_reading()
            return
        self.stream.write(data)

    def eof_received(self) -> bool:
        self._eof_in = True
        if self.stream is None:
            self._early_eof = True
        elif self.open:
            self.stream.write_eof()
        self._maybe_done()
        return True  # keep the other direction open

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._owed and self.stream is not None:
            owed, self._owed = self._owed, 0
            self.stream.consumed(owed)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.open:
            if self.stream is not None:
                self.stream.reset(Reason.RESET)
            self._finish(Reason.RESET)

    # -- the stream (StreamSink) -----------------------------------------------------------------

    def stream_data(self, data: memoryview) -> None:
        transport = self.transport
        if transport is None or not self.open:
            return
        n = len(data)
        self.bytes_out += n
        if transport.get_write_buffer_size():
            transport.write(bytes(data))  # queued behind earlier bytes: never a slice
        else:
            transport.write(data)
            if transport.get_write_buffer_size() and self.stream is not None:
                self.stream.keep()  # the unsent rest may still be the read buffer
        if self._write_paused:
            self._owed += n
        elif self.stream is not None:
            self.stream.consumed(n)

    def stream_eof(self) -> None:
        self._eof_out = True
        if self.transport is not None and self.transport.can_write_eof():
            self.transport.write_eof()
        self._maybe_done()

    def stream_reset(self, code: int) -> None:
        if not self.open:
            return
        if self.transport is not None:
            hard_close(self.transport)
        self._finish(Reason.from_code(code))

    def pause_source(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_source(self) -> None:
        if self.transport is not None and self.open:
            self.transport.resume_reading()

    def _maybe_done(self) -> None:
        """Both directions finished cleanly: close the socket (the stream ended both ways)."""
        if self._eof_in and self._eof_out and self.open:
            if self.stream is not None:
                self.stream.connection.forget(self.stream.id)
            if self.transport is not None:
                self.transport.close()
            self._finish(None)

    def _finish(self, result: Reason | None) -> None:
        self.open = False
        self.result = result
        self._early = []
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close(self)


def hand_over(
    relay: SocketStream | StreamBridge | Splice, transport: asyncio.Transport, rest: bytes
) -> None:
    """Give a stream just detached from its framed reader (``transport``, a
    :class:`StreamTransport`, and ``rest``, the bytes read past its last message) to the relay
    that carries it from now on: a socket joined directly, end ``b`` of a bridge to another
    stream, or leg ``b`` of a splice (a TLS socket). Called in the step that detached it."""
    if isinstance(relay, Splice):
        relay.attach(relay.b, transport, rest)
        return
    stream = cast(StreamTransport, transport).release()
    if isinstance(relay, SocketStream):
        relay.join(stream, rest)
    else:
        relay.join(relay.b, stream, rest)
