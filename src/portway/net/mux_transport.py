"""A stream of a version 2 session seen as an asyncio transport.

:class:`StreamTransport` lets every protocol written for a socket (a
:class:`~portway.net.framed.FramedConnection` reading an assignment, a
:class:`~portway.net.splice.Splice` leg, the edge's upstream lane, a UDP session's datagram
framing) run on a :class:`~portway.net.mux_stream.MuxStream` unchanged. It maps:

* ``write`` → stream DATA (bytes are kept by reference until framed, so anything mutable is
  copied first); ``write_eof`` → FIN; ``abort`` → RST; ``close`` → FIN, and the stream is done
  once the peer's FIN or RST arrives (bytes arriving after ``close`` are dropped, credit
  returned);
* the peer's DATA → ``data_received``, FIN → ``eof_received``, RST or the session's loss →
  ``connection_lost(ConnectionResetError)``;
* the stream's send queue above its high-water mark → ``pause_writing`` (and back).

Credit (WINDOW_UPDATE) goes back for bytes once ``data_received`` returned with reading not
paused; bytes that arrive while the protocol paused reading are held and credited when it
resumes and takes them, so a paused reader stops its own stream's sender and nothing else.
They, and the peer's FIN behind them, still reach it after the stream ended both ways
(``connection_lost(None)`` then follows them); only ``close`` drops them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from portway.errors import Unavailable
from portway.net.mux_stream import MuxStream
from portway.wire.codes import Reason
from portway.wire.frames import Bytes


class StreamResetError(Unavailable, ConnectionResetError):
    """The peer reset the stream (``reason``), or its session was lost.

    What a :class:`StreamTransport`'s protocol gets in ``connection_lost``; a
    `ConnectionResetError` still, as asyncio's streams and the relays expect of a lost peer.
    """

    code = "stream_reset"

    def __init__(self, reason: Reason) -> None:
        super().__init__(f"stream reset: {reason.value}")
        self.reason = reason


class StreamTransport(asyncio.Transport):
    """One :class:`MuxStream` as a transport; see the module docstring.

    Created by whoever opened or accepted the stream, with the protocol that reads it; the
    protocol's ``connection_made`` runs at once. The stream's sink is this transport from then on.
    """

    def __init__(self, stream: MuxStream, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self.stream = stream
        self._protocol: Any = protocol
        self._loop = stream.connection.loop
        self._paused = False
        self._held: list[bytes] = []  # arrived while reading was paused
        self._owed = 0  # credit for bytes taken just before the protocol paused reading
        self._held_eof = False
        self._eof_told: object | None = None  # the protocol that heard the peer's FIN
        self._drain_scheduled = False
        self._eof_out = False  # our FIN was queued
        self._eof_in = False  # the peer's FIN arrived
        self._closing = False
        self._done = False  # the stream is finished; connection_lost was scheduled
        protocol.connection_made(self)
        stream.attach(self)

    # -- transport API (called by the protocol) --------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in ("peername", "sockname"):
            session_transport = self.stream.connection.transport
            if session_transport is not None:
                return session_transport.get_extra_info(name, default)
        return default  # no socket, no sslcontext: a plain byte stream that can half-close

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand the stream to ``protocol``. If the peer's FIN already reached the old one (a
        :class:`~portway.net.framed.FramedConnection` reading an answer that the FIN followed
        at once), ``protocol`` hears ``eof_received`` too, after the current callback: a
        hand-over never loses a half-close."""
        self._protocol = protocol
        told = self._eof_told
        if told is not None and told is not protocol and not self._done:
            self._loop.call_soon(self._retell_eof, protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        protocol: asyncio.BaseProtocol = self._protocol
        return protocol

    def is_closing(self) -> bool:
        return self._closing or self._done

    def write(self, data: Bytes) -> None:
        if self._eof_out or self._done or not data:
            return
        self.stream.write(data if isinstance(data, bytes) else bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._eof_out or self._done:
            return
        self._eof_out = True
        self.stream.write_eof()
        self._maybe_finished()

    def close(self) -> None:
        if self._closing or self._done:
            return
        self._closing = True
        dropped = sum(map(len, self._held)) + self._owed
        self._held.clear()
        self._held_eof = False  # the peer's FIN, held behind those bytes, goes with them
        self._owed = 0
        if dropped:
            self.stream.consumed(dropped)  # nobody reads any more: keep the window open
        self.write_eof()
        self._maybe_finished()  # if our FIN went earlier, write_eof did nothing: finish here

    def abort(self) -> None:
        self.reset(Reason.RESET)

    def release(self) -> MuxStream:
        """Stop being the stream's sink and return the stream, for a sink that takes it over
        directly (:class:`~portway.net.mux_socket.SocketStream`, the fast path for a socket).

        Called in the step that detached this transport from its framed reader, before the new
        sink attaches: bytes held while reading was paused are given back to the stream, to be
        delivered (and credited) first, and a FIN or RST that arrived is replayed by ``attach``.
        No ``connection_lost`` follows: the protocol already handed the stream over."""
        stream = self.stream
        if self._owed:
            owed, self._owed = self._owed, 0
            stream.consumed(owed)
        stream.release(self._held)
        self._held = []
        self._done = self._closing = True
        return stream

    def reset(self, reason: Reason = Reason.RESET) -> None:
        """Abort the stream both ways with ``reason`` (the peer reads it from the RST)."""
        if self._done:
            return
        self.stream.reset(reason)
        self._finish(None)

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        """Reading goes on; what was held while paused is delivered after the current callback,
        as a socket's would be: the caller may still be handing the stream to a new protocol
        (:meth:`FramedConnection.detach <portway.net.framed.FramedConnection.detach>` resumes
        and returns the transport, whose next protocol is set in the same step)."""
        if not self._paused:
            return
        self._paused = False
        if self._owed:
            owed, self._owed = self._owed, 0
            self.stream.consumed(owed)
        if (self._held or self._held_eof) and not self._drain_scheduled:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain_held)

    def _drain_held(self) -> None:
        self._drain_scheduled = False
        while self._held and not self._paused and not self._done:
            data = self._held.pop(0)
            self._protocol.data_received(data)
            if self.is_reading():
                self.stream.consumed(len(data))
            else:  # the protocol paused again while taking them
                self._owed += len(data)
        if self._held_eof and not self._held and not self._paused:
            self._held_eof = False
            self._deliver_eof()

    def is_reading(self) -> bool:
        return not self._paused

    def get_write_buffer_size(self) -> int:
        return self.stream.connection.session.send_buffered(self.stream.id)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Accepted and ignored: a stream pauses its writer at the session's ``HIGH_WATER``."""

    # -- StreamSink (called by the session) ------------------------------------------------------

    def stream_data(self, data: memoryview) -> None:
        n = len(data)
        if self._closing or self._done:
            self.stream.consumed(n)  # nobody reads any more: drop, and keep the window open
            return
        if self._paused or self._held:  # after what is held, in order
            self._held.append(bytes(data))
            return
        self._protocol.data_received(bytes(data))
        if self.is_reading():
            self.stream.consumed(n)
        else:  # taken, but its destination is full: credit on resume_reading
            self._owed += n

    def stream_eof(self) -> None:
        self._eof_in = True
        if self._held:  # after the bytes still held
            self._held_eof = True
            return
        self._deliver_eof()

    def stream_reset(self, code: int) -> None:
        if self._done:
            return
        self._held.clear()
        self._finish(StreamResetError(Reason.from_code(code)))

    def pause_source(self) -> None:
        if not self._done:
            self._protocol.pause_writing()

    def resume_source(self) -> None:
        if not self._done:
            self._protocol.resume_writing()

    # -- internals -------------------------------------------------------------------------------

    def _retell_eof(self, protocol: object) -> None:
        if self._protocol is protocol and self._eof_told is not protocol:
            self._deliver_eof()

    def _deliver_eof(self) -> None:
        if self._closing or self._done:
            self._maybe_finished()
            return
        self._eof_told = self._protocol
        keep_open = self._protocol.eof_received()
        if not keep_open:
            self.close()
        self._maybe_finished()

    def _maybe_finished(self) -> None:
        if self._eof_in and self._eof_out and not self._done:
            # Both FINs: the connection forgets the stream (after the peer's FIN no credit is
            # owed, so held bytes need nothing from it). But a paused reader that has not yet
            # taken the held bytes and FIN gets them once it resumes: `_drain_held` then
            # delivers the FIN, whose `_deliver_eof` comes back here to finish.
            self.stream.connection.forget(self.stream.id)
            if self._held_eof:
                return
            self._finish(None)

    def _finish(self, exc: Exception | None) -> None:
        self._done = True
        self._closing = True
        self._loop.call_soon(self._protocol.connection_lost, exc)
