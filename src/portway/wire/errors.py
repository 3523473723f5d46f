"""Errors raised by the sans-IO codecs.

Every decoder in :mod:`portway.wire` turns malformed input into :class:`ProtocolError` and nothing
else, so the asyncio layer needs a single ``except`` to drop a misbehaving peer. It is the wire's
member of the `portway.errors.ProtocolViolation` family.
"""

from __future__ import annotations

from portway.errors import ProtocolViolation


class ProtocolError(ProtocolViolation):
    """The peer sent bytes that break the Portway wire protocol.

    Raised by the decoders when fed input; the caller (a protocol in :mod:`portway.net`) must stop
    reading from that connection, tell the peer when the format still allows it (a ``refused`` or
    ``goodbye`` frame, a stream reset) and close the transport. The decoder stays broken: feeding it
    again raises the same error.
    """

    def __init__(self, message: str, *, code: str = "protocol_error") -> None:
        super().__init__(message, code=code)
