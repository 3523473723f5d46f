"""The events, states and errors of `http1` (h11's names), shared by both connection sides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from portway.errors import ProtocolViolation

Headers = list[tuple[bytes, bytes]]


class State:
    """One side's place in the current request/response cycle (h11's names)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


IDLE: Final = State("IDLE")
SEND_RESPONSE: Final = State("SEND_RESPONSE")  # the server's, between a request head and its answer
SEND_BODY: Final = State("SEND_BODY")
DONE: Final = State("DONE")
MUST_CLOSE: Final = State("MUST_CLOSE")  # done, and the connection cannot carry another request
CLOSED: Final = State("CLOSED")
SWITCHED: Final = State("SWITCHED")  # after a 101: no more HTTP
NEED_DATA: Final = State("NEED_DATA")  # next_event(): nothing complete yet
PAUSED: Final = State("PAUSED")  # next_event(): the next request waits for start_next_cycle()


class HttpProtocolError(ProtocolViolation):
    """HTTP/1.1 was broken, by the peer (`RemoteProtocolError`) or by what the edge was about to
    send (`LocalProtocolError`); `status_hint` is the status an answer to the client should have.

    Not the wire's `portway.wire.errors.ProtocolError`: this one is about the edge's HTTP only.
    """

    code = "http_protocol_error"

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class RemoteProtocolError(HttpProtocolError):
    """The peer sent something that is not HTTP/1.1 (or a head over the limit).

    Raised by `next_event()` of either connection side, in the order the bytes came.
    """


class LocalProtocolError(HttpProtocolError):
    """The caller sent an event its side's state does not allow, or a head or body that HTTP/1.1
    cannot carry (a CR or LF in a header, more body than its Content-Length). Raised by `send()`
    and `start_next_cycle()`."""


@dataclass(slots=True)
class Request:
    method: bytes
    target: bytes
    headers: Headers
    http_version: bytes = b"1.1"


@dataclass(slots=True)
class InformationalResponse:
    status_code: int
    headers: Headers = field(default_factory=list)
    reason: bytes = b""


@dataclass(slots=True)
class Response:
    status_code: int
    headers: Headers = field(default_factory=list)
    reason: bytes = b""
    http_version: bytes = b"1.1"


@dataclass(slots=True)
class Data:
    data: bytes


@dataclass(slots=True)
class EndOfMessage:
    pass


@dataclass(slots=True)
class PeerClosed:
    pass


Event = Request | InformationalResponse | Response | Data | EndOfMessage | PeerClosed
END: Final = EndOfMessage()
