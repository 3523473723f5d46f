"""The set of control-stream and assignment messages, and their codec: encode, decode, read.

Each message is a frozen dataclass (:mod:`portway.wire.control_messages`,
:mod:`portway.wire.assignment_messages`) carried in one frame (:mod:`portway.wire.frames`) whose
type byte is the class's ``TYPE`` (:mod:`portway.wire.message_types`) and whose payload is
compact JSON of its fields. JSON because these frames are rare (a handful per session, a few per
proxied connection), must stay extensible (unknown keys are ignored) and readable in a packet
capture; the per-byte hot path is a stream's plain bytes (:mod:`portway.wire.mux`) instead.
Whoever writes a message calls :func:`encode`; :mod:`portway.net.framed` reads them with a
:class:`MessageReader` (on a control stream or an assignment), :mod:`portway.net.mux_opening`
decodes a stream's first message with :func:`decode`.
"""

from __future__ import annotations

from portway.wire import _json
from portway.wire.assignment_messages import Assign, AssignError, AssignOk, Diagnosis, DirectOpen
from portway.wire.control_messages import (
    ChannelHello,
    ControlHello,
    Counters,
    DesiredState,
    Goodbye,
    Ping,
    Pong,
    ReachOpen,
    ReachReject,
    Refused,
    Status,
    Welcome,
)
from portway.wire.errors import ProtocolError
from portway.wire.frames import MAX_HELLO_PAYLOAD, Bytes, FrameReader, encode_frame

Message = (
    ControlHello
    | ChannelHello
    | Welcome
    | Refused
    | DesiredState
    | Status
    | Counters
    | Ping
    | Pong
    | ReachOpen
    | ReachReject
    | Goodbye
    | Assign
    | AssignOk
    | AssignError
    | Diagnosis
    | DirectOpen
)

MESSAGE_CLASSES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        ControlHello,
        ChannelHello,
        Welcome,
        Refused,
        DesiredState,
        Status,
        Counters,
        Ping,
        Pong,
        ReachOpen,
        ReachReject,
        Goodbye,
        Assign,
        AssignOk,
        AssignError,
        Diagnosis,
        DirectOpen,
    )
}


def encode(message: Message) -> bytes:
    """A whole frame for ``message``: header, type byte, JSON payload. Write it as is."""
    return encode_frame(message.TYPE, _json.dumps(message))


def decode(kind: int, payload: bytes) -> Message:
    """Interpret one frame; raises :class:`ProtocolError` for unknown types or bad payloads."""
    cls = MESSAGE_CLASSES.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown frame type 0x{kind:02x}")
    message: Message = _json.loads(cls, payload)
    return message


class MessageReader:
    """Sans-IO reader of messages on one connection (wraps :class:`FrameReader`).

    The owner feeds received bytes, pulls one message at a time with :meth:`next_message`, and
    after pulling ``Assign`` (agent side) or ``AssignOk`` (hub side) takes the stream bytes that
    follow with :meth:`take_rest`.
    """

    def __init__(self, *, max_payload: int = MAX_HELLO_PAYLOAD) -> None:
        self.frames = FrameReader(max_payload=max_payload)
        self._error: ProtocolError | None = None

    def feed(self, data: Bytes) -> None:
        self.frames.feed(data)

    def next_message(self) -> Message | None:
        """The next whole message, or ``None`` until more bytes are fed.

        Raises :class:`ProtocolError`; the reader then stays broken, as :class:`FrameReader` does.
        """
        if self._error is not None:
            raise self._error
        frame = self.frames.next_frame()
        if frame is None:
            return None
        try:
            return decode(frame.kind, frame.payload)
        except ProtocolError as exc:
            self._error = exc
            raise

    def take_rest(self) -> bytes:
        return self.frames.take_rest()
