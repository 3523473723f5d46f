"""Events a :class:`~portway.wire.mux.MuxSession` reports: what the peer did, in order.

:meth:`MuxSession.receive_data <portway.wire.mux.MuxSession.receive_data>` returns a list of
them; the owner (:class:`~portway.net.mux.MuxConnection`, and the tests' in-memory peers) acts on
each one. They are plain frozen records: the session keeps no reference to them.

``data`` fields are memoryviews of the buffer passed to receive_data (no copy). asyncio's
data_received passes immutable bytes, so they stay valid as long as they are referenced (and
keep that whole buffer alive); a caller feeding a reused bytearray must use or copy them before
its next read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "DataReceived",
    "Event",
    "GoAwayReceived",
    "PingAcked",
    "SendWindowOpened",
    "StreamAccepted",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
]


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened ``stream_id`` (already accepted); ``data`` is what rode on its SYN frame.

    The owner connects the stream to its destination and writes ``data`` there (then reports it
    with ``consumed``); later bytes come as :class:`DataReceived`. To refuse it: ``reset_stream``.
    """

    stream_id: int
    data: memoryview


@dataclass(frozen=True, slots=True)
class StreamAccepted:
    """The peer accepted a stream this side opened."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Stream bytes, in order. The owner writes them to the destination and, once taken, calls
    ``consumed(stream_id, len(data), now)``: until then they count against the window."""

    stream_id: int
    data: memoryview


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer sent FIN: no more data on this stream from it (the owner may half-close)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The peer aborted the stream (``code`` is a :class:`~portway.wire.codes.Reason` byte, or
    :data:`~portway.wire.mux_frames.RESET_LIMIT`); its state is already gone, queued data was
    dropped."""

    stream_id: int
    code: int


@dataclass(frozen=True, slots=True)
class SendWindowOpened:
    """The peer gave credit to a stream whose send window was exhausted: queued data can move
    again on the next ``data_to_send``."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PingAcked:
    """The reply to one of our pings; ``rtt`` is this sample (``session.rtt`` is smoothed)."""

    rtt: float


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer is shutting the session down; ``code`` is a
    :class:`~portway.wire.mux_frames.GoAwayCode` when known.

    No new streams may be opened on this session; existing ones may finish. A non-normal code
    usually means the peer closes the connection right after.
    """

    code: int
    message: str


Event: TypeAlias = (
    StreamOpened
    | StreamAccepted
    | DataReceived
    | StreamEnded
    | StreamReset
    | SendWindowOpened
    | PingAcked
    | GoAwayReceived
)
