"""One stream of a :class:`~portway.net.mux.MuxConnection`, and where its received bytes go.

:class:`MuxStream` is the owner's handle on a stream: it writes, half-closes, resets and reports
consumed bytes through its connection's :class:`~portway.wire.mux.MuxSession`, and passes what
the connection delivers to the :class:`StreamSink` the owner attached (a local socket through
:class:`~portway.net.mux_socket.SocketStream`, a framed channel through
:class:`~portway.net.mux_transport.StreamTransport`, or another session's stream on the hub),
holding it until one is attached. The connection creates one per stream, for those it opens and
those the peer opens; the agent's and the hub's data-plane code hold them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from portway.wire.codes import Reason
from portway.wire.frames import Bytes
from portway.wire.mux_sending import HIGH_WATER

if TYPE_CHECKING:
    from portway.net.mux import MuxConnection


class StreamSink(Protocol):
    """Where a stream's received bytes go; attached by the owner with :meth:`MuxStream.attach`.

    ``stream_data`` must use ``data`` before returning (call :meth:`MuxStream.keep` if a
    reference survives) and call :meth:`MuxStream.consumed` once its destination took the bytes;
    ``stream_eof`` is the peer's FIN, ``stream_reset`` its RST (or the session's loss), after
    which the stream is gone. ``pause_source``/``resume_source`` stop and restart reading the
    local side while the stream's send queue is above ``HIGH_WATER``.
    """

    def stream_data(self, data: memoryview) -> None: ...
    def stream_eof(self) -> None: ...
    def stream_reset(self, code: int) -> None: ...
    def pause_source(self) -> None: ...
    def resume_source(self) -> None: ...


class MuxStream:
    """One stream of a :class:`MuxConnection`: the owner's handle for sending and receiving."""

    __slots__ = ("_ended", "_held", "_reset_code", "_source_paused", "connection", "id", "sink")

    def __init__(self, connection: MuxConnection, stream_id: int) -> None:
        self.connection = connection
        self.id = stream_id
        self.sink: StreamSink | None = None
        # What arrived before a sink was attached, given to it by `attach`, in order.
        self._held: list[bytes] = []
        self._ended = False
        self._reset_code: int | None = None
        self._source_paused = False

    def attach(self, sink: StreamSink) -> None:
        """Send this stream's bytes to ``sink`` from now on, those held meanwhile first.

        Called by the owner once the destination exists (the target dialled, the local client
        accepted); until then received bytes are copied and held (at most the window), and so
        are the peer's FIN and RST."""
        self.sink = sink
        held, self._held = self._held, []
        for data in held:
            sink.stream_data(memoryview(data))
        if self._reset_code is not None:
            sink.stream_reset(self._reset_code)
            return
        if self._ended:
            sink.stream_eof()
        if self._source_paused:
            sink.pause_source()

    def release(self, held: list[bytes]) -> None:
        """The sink lets go (see :meth:`StreamTransport.release
        <portway.net.mux_transport.StreamTransport.release>`): ``held`` (bytes it took but did
        not pass on) and what arrives from now on wait for the next :meth:`attach`."""
        self.sink = None
        self._held = held + self._held

    def write(self, data: Bytes) -> None:
        """Queue ``data`` (kept by reference until framed: pass immutable bytes or a copy)."""
        connection = self.connection
        session = connection.session
        session.send(self.id, data)
        if session.send_buffered(self.id) > HIGH_WATER and not self._source_paused:
            self._source_paused = True
            if self.sink is not None:
                self.sink.pause_source()
        connection.schedule_flush()

    def write_eof(self) -> None:
        """The local side finished sending: a FIN follows the queued bytes."""
        self.connection.session.end_stream(self.id)
        self.connection.schedule_flush()

    def reset(self, code: int = Reason.RESET) -> None:
        """Abort the stream both ways (queued bytes are dropped); the sink hears nothing more."""
        self.connection.forget(self.id)
        self.connection.session.reset_stream(self.id, code)
        self.connection.schedule_flush()

    def consumed(self, n: int) -> None:
        """The destination took ``n`` more received bytes: their credit may go back."""
        connection = self.connection
        connection.session.consumed(self.id, n, connection.loop.time())
        connection.schedule_flush()

    def keep(self) -> None:
        """The sink still references the slice it was given: the next read needs a new buffer."""
        self.connection.lend_buffer()

    def _deliver(self, data: memoryview) -> None:
        if self.sink is not None:
            self.sink.stream_data(data)
        else:
            self._held.append(bytes(data))

    def _end(self) -> None:
        self._ended = True
        if self.sink is not None:
            self.sink.stream_eof()

    def _abort(self, code: int) -> None:
        self._reset_code = code
        if self.sink is not None:
            self.sink.stream_reset(code)

    def _resume(self) -> None:
        self._source_paused = False
        if self.sink is not None:
            self.sink.resume_source()
