"""Both sides of an HTTP/1.1 connection as the edge holds them: `ServerConnection` towards a
client, `ClientConnection` towards a target; see the package docstring."""

from __future__ import annotations

import abc
import collections
from typing import Any

import httptools

from portway.errors import PortwayError
from portway.hub.edge.http1.framing import (
    Framer,
    head_bytes,
    parse_length,
    request_framer,
    status_line,
    tokens,
)  # fmt: skip
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

# The headers the connections act on themselves; `on_header` keeps their values as it parses,
# so no head is searched twice. A list-valued one (`Connection`, `Transfer-Encoding`) keeps all
# its values joined by commas, the others their first.
_LISTED = frozenset({b"connection", b"transfer-encoding"})
_SINGLE = frozenset({b"content-length", b"expect"})
_KEPT = _LISTED | _SINGLE


class _HeadDone(PortwayError):
    """Stops llhttp at a HEAD response's head (httptools has no other way); only `_feed` sees it."""


class _Parsing(abc.ABC):
    """What both sides share: httptools callbacks queue events; `next_event()` hands them out
    one cycle at a time and keeps the peer's state."""

    def __init__(self, max_head: int) -> None:
        self.max_head = max_head
        self.events: collections.deque[Event | HttpProtocolError] = collections.deque()
        self.their_state: State = IDLE
        self.our_state: State = IDLE
        self._parser = self._new_parser()
        self._url = b""  # a response's reason phrase
        self._headers: Headers = []
        self._kept: dict[bytes, bytes] = {}  # see `_KEPT`
        self._head_size = 0  # the head's parsed parts so far
        self._head_fed = 0  # bytes fed while the head is incomplete
        self._in_message = False
        self._in_head = False
        self._informational = False  # the message being parsed is a 1xx
        self._completed = 0  # messages completed by the current feed
        self._held: bytes | None = None  # after an upgrade: the bytes that followed, unparsed
        self._upgrading: object = None  # while queued: the upgrade's end, which they follow
        self._eof = False

    @abc.abstractmethod
    def _new_parser(self) -> Any:
        """A fresh httptools parser (request or response) calling back into `self`."""

    # -- httptools callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._kept = {}
        self._head_size = self._head_fed = 0
        self._in_message = self._in_head = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._grow(len(url))

    def on_status(self, status: bytes) -> None:
        self._url += status
        self._grow(len(status))

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a chunked body's trailer: those are dropped
        self._headers.append((name, value))
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.max_head:
            raise RemoteProtocolError("head too large", 431)
        lowered = name.lower()
        if lowered in _KEPT:
            kept = self._kept
            if lowered not in kept:
                kept[lowered] = value
            elif lowered in _LISTED:
                kept[lowered] += b"," + value

    def _grow(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self.max_head:
            raise RemoteProtocolError("head too large", 431)

    def on_body(self, body: bytes) -> None:
        self.events.append(Data(body))

    def on_message_complete(self) -> None:
        self._completed += 1
        self._in_message = False
        if self._informational:
            self._informational = False  # a 1xx ends, the response goes on
        else:
            self.events.append(EndOfMessage())  # its own: `_upgrading` tells ends apart

    # -- feeding ----------------------------------------------------------------------------------

    def _feed(self, data: bytes | memoryview) -> None:
        self._completed = 0
        counted = self._in_head or not self._in_message  # the head starts in or before `data`
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._held = bytes(data[upgrade.args[0] :])
            self._upgrading = self.events[-1] if self.events else None
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadDone):
                self._in_message = False
                self.events.append(END)
                self._parser = self._new_parser()  # llhttp stays in its error state
            elif isinstance(cause, HttpProtocolError):
                self.events.append(cause)
            else:
                self.events.append(RemoteProtocolError(str(exc)))
            return
        except httptools.HttpParserError as exc:
            self.events.append(RemoteProtocolError(str(exc)))
            return
        # llhttp keeps an unfinished header line to itself: bound it by the bytes fed. A feed
        # that completed a message began the next head somewhere inside it; not counted.
        if self._in_head and counted and not self._completed:
            self._head_fed += len(data)
            if self._head_fed > self.max_head:
                self.events.append(RemoteProtocolError("head too large", 431))

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """What followed an upgrade request or a 101 (relayed raw after a switch), and whether
        the peer's side ended."""
        return self._held or b"", self._eof

    @property
    def pending(self) -> bool:
        """Something of a next message (or an error, or the peer's EOF) came already."""
        return bool(self.events) or self._in_message or bool(self._held)

    def next_event(self) -> Event | State:
        if self.their_state in (DONE, MUST_CLOSE, SWITCHED):
            return PAUSED
        if not self.events:
            return NEED_DATA
        event = self.events[0]
        if isinstance(event, HttpProtocolError):
            raise event  # and it stays the answer
        self.events.popleft()
        if event is self._upgrading:
            self._upgrading = None  # the held bytes follow the request under way now
        self._track(event)
        return event

    @abc.abstractmethod
    def _track(self, event: Event) -> None:
        """Move the peer's state for `event`, which `next_event()` is handing out."""


class ServerConnection(_Parsing):
    """The edge's side of a client connection: requests in, responses out."""

    def __init__(self, max_head: int = 64 * 1024) -> None:
        super().__init__(max_head)
        self._request: Request | None = None
        self._keep_alive = True
        self._framer = Framer("none")
        self.they_are_waiting_for_100_continue = False
        # Per queued request, read from its head as it was parsed: (keep-alive, expects 100).
        self._traits: collections.deque[tuple[bool, bool]] = collections.deque()

    def _new_parser(self) -> httptools.HttpRequestParser:
        return httptools.HttpRequestParser(self)

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        version = parser.get_http_version().encode()
        self.events.append(Request(parser.get_method(), self._url, self._headers, version))
        kept = self._kept
        keep_alive = version == b"1.1" and b"close" not in tokens(kept.get(b"connection"))
        expect = kept.get(b"expect")
        self._traits.append((keep_alive, expect is not None and expect.lower() == b"100-continue"))

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; b"" when it closed its side."""
        if not data:
            self._eof = True
            if self._in_message:
                self.events.append(RemoteProtocolError("the client closed mid-request"))
            self.events.append(PeerClosed())
        elif self._held is not None:
            self._held += data  # after an upgrade request, until its answer is known
        else:
            self._feed(data)

    def _track(self, event: Event) -> None:
        if isinstance(event, Request):
            self._request = event
            self.their_state = SEND_BODY
            self.our_state = SEND_RESPONSE
            self._keep_alive, self.they_are_waiting_for_100_continue = self._traits.popleft()
        elif isinstance(event, Data):
            self.they_are_waiting_for_100_continue = False
        elif isinstance(event, EndOfMessage):
            self.they_are_waiting_for_100_continue = False
            self.their_state = DONE if self._keep_alive else MUST_CLOSE
        elif isinstance(event, PeerClosed):
            self.their_state = CLOSED

    def send(self, event: Event) -> bytes:
        """The bytes that carry `event` (a response event) to the client. A response may be
        sent before any request was read (an error page for a bad or slow head)."""
        if isinstance(event, Data):
            if self.our_state is not SEND_BODY:
                raise LocalProtocolError(f"body while {self.our_state}")
            return self._framer.wrap(event.data)
        if isinstance(event, EndOfMessage):
            if self.our_state is not SEND_BODY:
                raise LocalProtocolError(f"end of message while {self.our_state}")
            self.our_state = DONE if self._keep_alive else MUST_CLOSE
            return self._framer.end()
        if self.our_state is not SEND_RESPONSE and self.our_state is not IDLE:
            raise LocalProtocolError(f"a response while {self.our_state}")
        self.they_are_waiting_for_100_continue = False
        if isinstance(event, InformationalResponse):
            if event.status_code == 101:
                self.our_state = self.their_state = SWITCHED
            return head_bytes(status_line(event.status_code, event.reason), event.headers)
        if not isinstance(event, Response):
            raise LocalProtocolError(f"a server cannot send {type(event).__name__}")
        return self._response_head(event)

    def _response_head(self, event: Response) -> bytes:
        request = self._request
        status = event.status_code
        headers: Headers = []
        length_value: bytes | None = None
        close = False
        for name, value in event.headers:  # one pass: drop the framing this side re-does
            lowered = name.lower()
            if lowered == b"transfer-encoding":
                continue
            if lowered == b"content-length":
                length_value = value if length_value is None else length_value
            elif lowered == b"connection":
                close = close or b"close" in tokens(value)
            headers.append((name, value))
        length = None if length_value is None else parse_length(length_value)
        if (request is not None and request.method == b"HEAD") or status in (204, 304):
            self._framer = Framer("none")
        elif length is not None:
            self._framer = Framer("length", length)
        elif request is not None and request.http_version == b"1.1":
            self._framer = Framer("chunked")
            headers.append((b"Transfer-Encoding", b"chunked"))
        else:
            self._framer = Framer("close")
            self._keep_alive = False
        if request is None:
            self._keep_alive = False
        if not self._keep_alive and not close:
            headers.append((b"Connection", b"close"))
        self.our_state = SEND_BODY
        return head_bytes(status_line(status, event.reason), headers)

    def start_next_cycle(self) -> None:
        """Both sides are done and keep-alive holds: go on with the next request."""
        if self.our_state is not DONE or self.their_state is not DONE:
            raise LocalProtocolError("the cycle is not over")
        self.our_state = self.their_state = IDLE
        self._request = None
        self._keep_alive = True
        if self._held is not None and self._upgrading is None:
            # The target declined the upgrade: what followed it is the next request.
            held, self._held = self._held, None
            if held:
                self._feed(held)


class ClientConnection(_Parsing):
    """The edge's side of an upstream channel: requests out, responses in."""

    def __init__(self, max_head: int = 64 * 1024) -> None:
        super().__init__(max_head)
        self._method = b""
        self._framer = Framer("none")
        self._until_close = False  # the response body ends when the target closes
        self._keep_alive = True

    def _new_parser(self) -> httptools.HttpResponseParser:
        return httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        status = parser.get_status_code()
        headers = self._headers
        if 100 <= status < 200:
            self._informational = True
            self.events.append(InformationalResponse(status, headers, self._url))
            return
        version = parser.get_http_version().encode()
        self.events.append(Response(status, headers, self._url, version))
        kept = self._kept
        chunked = b"chunked" in kept.get(b"transfer-encoding", b"").lower()
        no_body = self._method == b"HEAD" or status in (204, 304)
        sized = chunked or b"content-length" in kept
        self._until_close = not no_body and not sized
        self._keep_alive = (
            version == b"1.1" and not self._until_close
            and b"close" not in tokens(kept.get(b"connection"))
        )  # fmt: skip
        if self._method == b"HEAD":
            raise _HeadDone("HEAD")  # llhttp cannot be told the request was HEAD: the head is all

    def receive_data(self, data: bytes | memoryview) -> None:
        """Bytes from the channel (a slice of what it read, not copied); b"" at the target's EOF."""
        if not data:
            self._eof = True
            if self._in_message and self._until_close and not self._in_head:
                self._in_message = False
                self.events.append(END)  # the close was the end of the body
            elif self._in_message:
                self.events.append(RemoteProtocolError("the target closed mid-response"))
            self.events.append(PeerClosed())
        elif self._held is not None:
            self._held += bytes(data)  # after a 101
        else:
            self._feed(data)

    def _track(self, event: Event) -> None:
        if isinstance(event, Response):
            self.their_state = SEND_BODY
        elif isinstance(event, EndOfMessage):
            self.their_state = DONE if self._keep_alive else MUST_CLOSE
        elif isinstance(event, InformationalResponse) and event.status_code == 101:
            self.their_state = SWITCHED
        elif isinstance(event, PeerClosed):
            self.their_state = CLOSED

    def send(self, event: Event) -> bytes:
        """The bytes that carry `event` (a request event) to the target."""
        if isinstance(event, Request):
            if self.our_state is not IDLE:
                raise LocalProtocolError(f"a request while {self.our_state}")
            self._method = event.method.upper()
            self._framer = request_framer(event.headers)
            self.our_state = SEND_BODY
            return head_bytes(b"%b %b HTTP/1.1\r\n" % (event.method, event.target), event.headers)
        if self.our_state is not SEND_BODY:
            raise LocalProtocolError(f"{type(event).__name__} while {self.our_state}")
        if isinstance(event, Data):
            return self._framer.wrap(event.data)
        if isinstance(event, EndOfMessage):
            self.our_state = DONE
            return self._framer.end()
        raise LocalProtocolError(f"a client cannot send {type(event).__name__}")

    def start_next_cycle(self) -> None:
        """The exchange ended cleanly both ways: the channel carries the next request."""
        if self.our_state is not DONE or self.their_state is not DONE:
            raise LocalProtocolError("the cycle is not over")
        self.our_state = self.their_state = IDLE
        self._method = b""
