"""HTTP/1.1 for the edge with no I/O: bytes in, events out; events in, bytes out.

The shape is h11's (`receive_data()`, `next_event()`, `send()`, `start_next_cycle()`, each side's
state), but the parsing is llhttp's, through httptools: h11 validating and re-serializing every
head in Python cost more than everything else the edge does per request. `Conversation`
(conversation.py) holds a `ServerConnection` per client connection and its upstream `Lane`
(exchange.py) a `ClientConnection` per data channel; the conversation turns the events one
parses into `send()` calls on the other.

What the proxy relies on:

* Requests on a connection are handled one at a time. Pipelined requests are parsed as they
  arrive but their events wait in a queue: `next_event()` answers `PAUSED` from the end of one
  request until `start_next_cycle()`.
* Bodies are de-framed on the way in and framed again on the way out: a response with a
  `Content-Length` keeps it, any other body goes to an HTTP/1.1 client chunked and to an
  HTTP/1.0 client delimited by closing the connection. HEAD, 1xx, 204 and 304 answers have none.
* A request asking to upgrade (WebSocket) keeps what followed its head in `trailing_data`; the
  proxy relays it raw after a `101`, or it is parsed as the next request if the target declined.
* Heads are limited to `max_head` bytes (the error's `status_hint` is 431); malformed input is
  `RemoteProtocolError` (400), misuse by the caller `LocalProtocolError`.
"""

from portway.hub.edge.http1.connections import ClientConnection, ServerConnection
from portway.hub.edge.http1.framing import header, tokens
from portway.hub.edge.http1.parts import (
    CLOSED,
    DONE,
    END,
    IDLE,
    MUST_CLOSE,
    NEED_DATA,
    PAUSED,
    SEND_BODY,
    SEND_RESPONSE,
    SWITCHED,
    Data,
    EndOfMessage,
    Event,
    Headers,
    HttpProtocolError,
    InformationalResponse,
    LocalProtocolError,
    PeerClosed,
    RemoteProtocolError,
    Request,
    Response,
    State,
)  # fmt: skip

__all__ = [
    "CLOSED",
    "DONE",
    "END",
    "IDLE",
    "MUST_CLOSE",
    "NEED_DATA",
    "PAUSED",
    "SEND_BODY",
    "SEND_RESPONSE",
    "SWITCHED",
    "ClientConnection",
    "Data",
    "EndOfMessage",
    "Event",
    "Headers",
    "HttpProtocolError",
    "InformationalResponse",
    "LocalProtocolError",
    "PeerClosed",
    "RemoteProtocolError",
    "Request",
    "Response",
    "ServerConnection",
    "State",
    "header",
    "tokens",
]
