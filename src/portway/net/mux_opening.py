"""A stream's opening message, read off its first bytes in the callback that delivered them.

Every stream the hub opens to an agent starts with one version 1 message frame each way
(``docs/protocol.md`` §14): the hub's ``assign``, then the agent's answer. :class:`FirstMessage`
is the stream's sink until the peer's frame has been read: no task, no framed reader, no
transport per stream. The exposing agent reads the ``assign`` with it (`agent.links`), the hub
the answer to a public visitor's ``assign`` (`hub.dataplane.pairing`).

Credit follows the destination here too: the frame's own bytes are taken (and credited) as they
arrive; the bytes after it are not. They wait in the stream, with everything that follows, until
the next sink attaches and its destination takes them, so a peer that sends right behind its
frame (the hub, a visitor's first bytes behind the ``assign``) is held to the stream's window.
"""

from __future__ import annotations

import abc

from portway.net.mux_stream import MuxStream, StreamSink
from portway.wire.codes import Reason
from portway.wire.errors import ProtocolError
from portway.wire.frames import HEADER, HEADER_SIZE, MAX_HELLO_PAYLOAD
from portway.wire.messages import Message, decode


class FirstMessage(abc.ABC):
    """The sink of ``stream`` until the peer's first message frame is read; attaches itself.

    Subclasses implement :meth:`message_received` and :meth:`ended`. When the frame is whole the
    stream is left without a sink, the bytes that followed the frame held in it (uncredited), and
    :meth:`message_received` runs; it attaches the stream's next sink, now or later (``attach``
    hands it the held bytes first), or resets the stream. While this sink is attached, the
    stream's send-side pressure (``pause_source``/``resume_source``) goes to ``source``, the
    socket already writing into the stream (the hub's visitor), if any.
    """

    __slots__ = ("_partial", "source", "stream")

    def __init__(self, stream: MuxStream, source: StreamSink | None = None) -> None:
        self.stream = stream
        self.source = source
        self._partial = b""  # the frame so far, when it comes in more than one DATA payload
        stream.attach(self)

    @abc.abstractmethod
    def message_received(self, message: Message) -> None:
        """The peer's first message; the stream now has no sink (see the class docstring)."""

    @abc.abstractmethod
    def ended(self, reason: Reason | None) -> None:
        """The stream ended before a whole message: the peer's FIN (``None``), its RST or the
        session's loss (the reason), or a malformed frame (``PROTOCOL_ERROR``; this sink has
        reset the stream). Called once; nothing more reaches this sink."""

    # -- StreamSink ------------------------------------------------------------------------------

    def stream_data(self, data: memoryview) -> None:
        stream = self.stream
        partial = self._partial
        # Usually the whole frame is in the stream's first DATA payload: parse it in place.
        view = memoryview(partial + data) if partial else data
        if len(view) < HEADER_SIZE:
            self._hold(view, len(data))
            return
        length, kind = HEADER.unpack_from(view)
        if length > MAX_HELLO_PAYLOAD:
            self._fail()
            return
        end = HEADER_SIZE + length
        if len(view) < end:
            self._hold(view, len(data))
            return
        try:
            message = decode(kind, bytes(view[HEADER_SIZE:end]))
        except ProtocolError:
            self._fail()
            return
        self._partial = b""
        stream.consumed(end - len(partial))
        rest = view[end:]
        stream.release([bytes(rest)] if rest else [])
        self.message_received(message)

    def stream_eof(self) -> None:
        self.ended(None)

    def stream_reset(self, code: int) -> None:
        self.ended(Reason.from_code(code))

    def pause_source(self) -> None:
        if self.source is not None:
            self.source.pause_source()

    def resume_source(self) -> None:
        if self.source is not None:
            self.source.resume_source()

    def _hold(self, view: memoryview, new: int) -> None:
        self._partial = bytes(view)
        self.stream.consumed(new)  # every byte so far is the frame's: taken

    def _fail(self) -> None:
        self.stream.reset(Reason.PROTOCOL_ERROR)
        self.ended(Reason.PROTOCOL_ERROR)
