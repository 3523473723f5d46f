"""Errors a :class:`~portway.wire.mux.MuxSession` raises when its owner misuses it.

The owner's mistakes only: asking for a stream the session cannot open, or acting on a stream it
never opened or already ended. The peer's mistakes are :class:`~portway.wire.errors.ProtocolError`
instead. Raised by the session's local actions (:mod:`portway.wire.mux_sending`); caught by the
agent's and the hub's link code, which opens the stream on another session.
"""

from __future__ import annotations

from portway.errors import Unavailable

__all__ = ["LimitReached", "MuxError", "SessionClosed", "StreamStateError"]


class MuxError(Unavailable):
    """The owner asked for something the session cannot do."""


class SessionClosed(MuxError):
    """No new stream: a ``GO_AWAY`` was sent or received, or the session failed."""


class LimitReached(MuxError):
    """No new stream: the memory budget is full or stream ids are exhausted."""


class StreamStateError(MuxError):
    """The stream id was never opened, or this side already ended it."""
