"""asyncio adapter for a version 2 session: one transport carrying many streams.

:class:`MuxConnection` is the protocol of the session's transport (TLS or plain TCP) and drives
a sans-IO :class:`~portway.wire.mux.MuxSession`; each stream is a
:class:`~portway.net.mux_stream.MuxStream` whose bytes go to a ``StreamSink`` the owner attaches
(a local socket through :class:`~portway.net.mux_socket.SocketStream`, or another session's
stream on the hub). The agent's links and the hub's data plane (and agent port) create one per
session. Nothing awaits per chunk:

* **Reading** is a ``BufferedProtocol``: the transport reads into one buffer, the session parses
  it through a memoryview and every payload reaches its sink as a slice of it, in the same
  callback. A sink that has to keep a slice (its socket could not take it all at once) marks the
  buffer lent with :meth:`MuxStream.keep`, and the next read gets a fresh one; otherwise the same
  buffer serves every read. The reader is never paused: the windows bound what may arrive.
* **Writing** is one flush per event-loop turn, scheduled by whatever made frames ready, so all
  the frames of a turn (many streams' small writes) leave in one write, one TLS record where
  they fit. While the session's transport is above its write limit nothing more is framed: the
  streams' queues fill, and each source socket is paused past ``HIGH_WATER``.
* **Credit** goes back only for bytes the sink took (:meth:`MuxStream.consumed`), so a slow
  destination slows its own stream's sender and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import cast

from portway.net.mux_stream import MuxStream
from portway.net.tls import remember_session
from portway.wire.codes import Reason
from portway.wire.control_messages import Refused
from portway.wire.errors import ProtocolError
from portway.wire.frames import Bytes
from portway.wire.messages import MessageReader
from portway.wire.mux import MuxSession
from portway.wire.mux_events import (
    DataReceived,
    GoAwayReceived,
    StreamEnded,
    StreamOpened,
    StreamReset,
)
from portway.wire.mux_frames import MUX_VERSION, GoAwayCode

log = logging.getLogger(__name__)

READ_BUFFER = 256 * 1024
WRITE_LIMIT = 256 * 1024  # the session transport's high-water mark
FLUSH_BYTES = 1024 * 1024  # framed per flush before yielding to other callbacks


OpenHandler = Callable[[MuxStream, memoryview], int]


class MuxConnection(asyncio.BufferedProtocol):
    """The protocol of one session's transport.

    Created by whoever dialled or accepted the connection once the preface was exchanged.
    ``on_open(stream, first)`` is called for every stream the peer opens, with the bytes that
    rode on its SYN: the owner reads the stream's opening message from their start (copying what
    it keeps) and returns how many bytes it used; the rest is the stream's data, held until the
    owner attaches a sink (now or once its destination is ready), or dropped if it resets the
    stream. ``on_made(connection)`` is called once the transport is up (after its TLS
    handshake: a protocol made for a client that never finishes one is never made, nor lost, so
    only from here may the owner count the session as live), ``on_close(error)`` once the
    transport is gone, after every stream's sink heard a reset.
    """

    def __init__(
        self,
        session: MuxSession,
        on_open: OpenHandler,
        on_close: Callable[[BaseException | None], None] | None = None,
        *,
        on_made: Callable[[MuxConnection], None] | None = None,
        name: str = "session",
        preface: bytes = b"",
    ) -> None:
        self.session = session
        self.on_open = on_open
        self.on_close = on_close
        self.on_made = on_made
        self.name = name
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, MuxStream] = {}
        self.go_away: GoAwayReceived | None = None
        self.last_heard = self.loop.time()
        self._buffer = memoryview(bytearray(READ_BUFFER))
        self._lent = False
        self._join = False
        self._flush_handle: asyncio.Handle | None = None
        self._write_paused = False
        self._closing = False
        self._preface = preface  # the dialling side writes it before any frame
        self._first_read = True
        self._heartbeat: asyncio.TimerHandle | None = None
        self.refused: Refused | None = None
        """A version 1 hub's frozen ``refused`` frame, read instead of version 2 frames."""

    # -- the owner's side ------------------------------------------------------------------------

    def open_stream(self, first: Bytes = b"", *, after_reads: bool = False) -> MuxStream:
        """A new stream carrying ``first`` on its SYN (no round trip). Raises
        :class:`~portway.wire.mux_errors.SessionClosed` or ``LimitReached``: try another session.

        ``after_reads`` (a public visitor's stream, opened as it is accepted) frames the SYN
        after the loop's next poll for I/O at the latest, so the visitor's first bytes, usually
        readable by then, ride on it: one frame and one write instead of two."""
        stream_id = self.session.open_stream(first)
        stream = self.streams[stream_id] = MuxStream(self, stream_id)
        if after_reads:
            self.loop.call_soon(self.schedule_flush)  # callbacks queued now run after the poll
        else:
            self.schedule_flush()
        return stream

    def forget(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)

    def ping(self) -> None:
        """Queue a PING (heartbeat and RTT sample); the owner's timer calls this."""
        self.session.ping(self.loop.time())
        self.schedule_flush()

    def close(self, code: int = GoAwayCode.NORMAL, message: str = "") -> None:
        """Say GO_AWAY, write what is queued, then close the transport."""
        if self._closing or self.transport is None:
            return
        self._closing = True
        self.session.go_away(code, message)
        self._flush()
        self.transport.close()

    def feed(self, data: bytes) -> None:
        """Parse ``data`` as if the transport had read it (the bytes that followed the preface
        in the read that carried it); called by the agent port right after ``connection_made``."""
        while data:
            buffer = self.get_buffer(len(data))
            n = min(len(buffer), len(data))
            buffer[:n] = data[:n]
            data = data[n:]
            self.buffer_updated(n)

    def start_heartbeat(self, interval: float, timeout: float) -> None:
        """PING every ``interval`` seconds; close the session after ``timeout`` of silence.

        Called by the owner once the session is admitted: a session that is up for TCP but
        stuck (a dead peer behind a NAT) is found, and each answer feeds the RTT estimate."""

        def beat() -> None:
            if self.transport is None:
                return
            if self.loop.time() - self.last_heard > timeout:
                log.warning("%s: no answer to pings for %.0f s: closing", self.name, timeout)
                self.close(GoAwayCode.NORMAL, "no answer to pings")
                return
            self.ping()
            self._heartbeat = self.loop.call_later(interval, beat)

        self._heartbeat = self.loop.call_later(interval, beat)

    def lend_buffer(self) -> None:
        self._lent = True

    def schedule_flush(self) -> None:
        """Frame and write what is ready at the end of this loop turn (one write for all)."""
        if self._flush_handle is None and self.transport is not None:
            self._flush_handle = self.loop.call_soon(self._flush)

    # -- asyncio callbacks -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        transport.set_write_buffer_limits(high=WRITE_LIMIT)
        # A TLS transport makes records of each buffer written apart: join a flush's frames.
        self._join = transport.get_extra_info("sslcontext") is not None
        if self._preface:
            transport.write(self._preface)
        self.schedule_flush()
        if self.on_made is not None:
            self.on_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._lent:
            self._buffer = memoryview(bytearray(READ_BUFFER))
            self._lent = False
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        now = self.last_heard = self.loop.time()
        if self._first_read and not self._first_bytes(nbytes):
            return
        try:
            events = self.session.receive_data(self._buffer[:nbytes], now)
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        streams = self.streams
        for event in events:
            if isinstance(event, DataReceived):
                if stream := streams.get(event.stream_id):
                    stream._deliver(event.data)
            elif isinstance(event, StreamOpened):
                self._opened(event, now)
            elif isinstance(event, StreamEnded):
                if stream := streams.get(event.stream_id):
                    stream._end()
            elif isinstance(event, StreamReset):
                if stream := streams.pop(event.stream_id, None):
                    stream._abort(event.code)
            elif isinstance(event, GoAwayReceived):
                self.go_away = event
                log.info("%s: peer said GO_AWAY %s: %s", self.name, event.code, event.message)
            # PingAcked: the session keeps the smoothed RTT; SendWindowOpened and
            # StreamAccepted: the next flush frames what they allow.
        self.schedule_flush()

    def _first_bytes(self, nbytes: int) -> bool:
        """The session's first read: False when it is a version 1 hub's refusal instead."""
        self._first_read = False
        if not self.session.client:
            return True
        remember_session(self.transport)  # TLS 1.3 tickets came with them: the next dial resumes
        if nbytes and self._buffer[0] != MUX_VERSION:
            self._legacy_refusal(bytes(self._buffer[:nbytes]))
            return False
        return True

    def _opened(self, event: StreamOpened, now: float) -> None:
        stream = self.streams[event.stream_id] = MuxStream(self, event.stream_id)
        used = self.on_open(stream, event.data)
        if used:
            self.session.consumed(stream.id, used, now)
        if used < len(event.data) and stream.id in self.streams:  # on_open did not reset it
            stream._deliver(event.data[used:])

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self.schedule_flush()

    def eof_received(self) -> bool:
        return False  # the peer closed its side: the session is over

    def connection_lost(self, exc: Exception | None) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self.transport = None
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream._abort(Reason.RESET)
        if self.on_close is not None:
            self.on_close(exc)

    # -- internals -------------------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_handle = None
        transport = self.transport
        if transport is None:
            return
        session = self.session
        written = 0
        while not self._write_paused and written < FLUSH_BYTES:
            frames = session.data_to_send()
            if not frames:
                break
            size = sum(map(len, frames))
            written += size
            if self._join:  # each buffer would be a TLS record: a 12-byte header one too
                transport.write(b"".join(frames))
            else:
                transport.writelines(frames)
            for stream_id in session.writable_streams():
                stream = self.streams.get(stream_id)
                if stream is not None:
                    stream._resume()
        if written >= FLUSH_BYTES and not self._write_paused:
            self.schedule_flush()  # more is ready: let other callbacks run first

    def _legacy_refusal(self, data: bytes) -> None:
        """The hub answered in version 1 framing: its frozen ``refused`` frame, or garbage."""
        reader = MessageReader()
        reader.feed(data)
        with contextlib.suppress(ProtocolError):
            message = reader.next_message()
            if isinstance(message, Refused):
                self.refused = message
        if self.refused is None:
            log.warning("%s: the peer does not speak protocol version 2", self.name)
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def _protocol_error(self, exc: ProtocolError) -> None:
        """The peer broke the protocol: GO_AWAY (already queued by the session), then close."""
        log.warning("%s: closing the session: %s (%s)", self.name, exc, exc.code)
        transport = self.transport
        if transport is None:
            return
        for frame in self.session.data_to_send():
            transport.write(frame)
        self._closing = True
        transport.close()
