"""The version 2 splice: a TCP socket joined to a stream of a session (:mod:`portway.net.mux`)."""

from __future__ import annotations

import asyncio
from typing import cast

from portway.net.mux import WRITE_LIMIT, MuxStream
from portway.net.splice import hard_close
from portway.wire.codes import Reason
from portway.wire.mux import HIGH_WATER


class SocketStream(asyncio.Protocol):
    """A TCP socket joined to a stream: the version 2 splice.

    The protocol of a visitor's or client's accepted socket, or of the connection dialled to a
    target; :meth:`join` links it to its stream (bytes read before that are held, in order).
    Reads go to the stream as they come (bytes, kept by reference until framed); the stream's
    bytes are written to the socket, with their credit returned while the socket's buffer is
    under its limit and from ``resume_writing`` otherwise. EOF travels as FIN both ways; a reset
    of either side is a reset of the other (an RST on the socket).
    """

    def __init__(self, stream: MuxStream | None = None) -> None:
        self.stream = stream
        self.transport: asyncio.Transport | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self._early: list[bytes] = []
        self._early_eof = False
        self._owed = 0  # credit held back while the socket's buffer is over its limit
        self._write_paused = False
        self._eof_in = False
        self._eof_out = False
        self._done = False

    def join(self, stream: MuxStream) -> None:
        """Link to ``stream`` and attach as its sink; held reads are sent first."""
        self.stream = stream
        stream.attach(self)
        for data in self._early:
            stream.write(data)
        self._early = []
        if self._early_eof:
            stream.write_eof()

    # -- the socket ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=WRITE_LIMIT)
        if self.stream is not None:
            self.join(self.stream)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self.stream is None:
            self._early.append(data)
            if sum(map(len, self._early)) > HIGH_WATER and self.transport is not None:
                self.transport.pause_reading()
            return
        self.stream.write(data)

    def eof_received(self) -> bool:
        self._eof_in = True
        if self.stream is None:
            self._early_eof = True
        else:
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
        if not self._done and self.stream is not None:
            self._done = True
            self.stream.reset(Reason.RESET)

    # -- the stream (StreamSink) -----------------------------------------------------------------

    def stream_data(self, data: memoryview) -> None:
        transport = self.transport
        if transport is None:
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
        self._done = True
        if self.transport is not None:
            hard_close(self.transport)

    def pause_source(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_source(self) -> None:
        if self.transport is not None and not self._done:
            self.transport.resume_reading()

    def _maybe_done(self) -> None:
        """Both directions finished cleanly: close the socket (the stream ended both ways)."""
        if self._eof_in and self._eof_out and not self._done:
            self._done = True
            if self.stream is not None:
                self.stream.connection.forget(self.stream.id)
            if self.transport is not None:
                self.transport.close()
