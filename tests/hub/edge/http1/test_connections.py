"""The edge's sans-IO HTTP/1.1 (`http1`): bytes in, events out; events in, bytes out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portway.hub.edge import http1

Item = http1.Event | http1.State

GET = b"GET / HTTP/1.1\r\nHost: web\r\n\r\n"
UPGRADE = b"GET /ws HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
FRAME = b"\x81\x05hello"  # a WebSocket text frame, not HTTP


def drain(conn: http1.ServerConnection | http1.ClientConnection) -> list[Item]:
    """`next_event()` until it answers NEED_DATA or PAUSED (included)."""
    out: list[Item] = []
    while True:
        event = conn.next_event()
        out.append(event)
        if event is http1.NEED_DATA or event is http1.PAUSED:
            return out


def answer(conn: http1.ServerConnection, body: bytes = b"ok") -> bytes:
    length = str(len(body)).encode()
    return b"".join((
        conn.send(http1.Response(200, [(b"Content-Length", length)])),
        conn.send(http1.Data(body)),
        conn.send(http1.END),
    ))  # fmt: skip


def requested(method: bytes = b"GET") -> http1.ClientConnection:
    """A client connection whose request (no body) went out."""
    conn = http1.ClientConnection()
    conn.send(http1.Request(method, b"/", [(b"Host", b"target")]))
    conn.send(http1.END)
    return conn


def merged(items: list[Item]) -> list[Item]:
    """Consecutive Data events as one (how bodies are cut depends on how bytes arrived)."""
    out: list[Item] = []
    for item in items:
        if isinstance(item, http1.Data) and out and isinstance(out[-1], http1.Data):
            out[-1] = http1.Data(out[-1].data + item.data)
        else:
            out.append(item)
    return out


def pending(conn: http1.ServerConnection | http1.ClientConnection) -> bool:
    return conn.pending  # read through a call: mypy would keep an asserted value narrowed


def waiting(conn: http1.ServerConnection) -> bool:
    return conn.they_are_waiting_for_100_continue


# -- server: requests in, responses out -----------------------------------------------------------


def test_simple_get_cycle() -> None:
    conn = http1.ServerConnection()
    conn.receive_data(b"GET /a?b=1 HTTP/1.1\r\nHost: web\r\nX-Mixed-Case: Yes\r\n\r\n")
    assert pending(conn)
    assert drain(conn) == [
        http1.Request(b"GET", b"/a?b=1", [(b"Host", b"web"), (b"X-Mixed-Case", b"Yes")], b"1.1"),
        http1.EndOfMessage(),
        http1.PAUSED,
    ]
    assert conn.their_state is http1.DONE and conn.our_state is http1.SEND_RESPONSE
    assert not pending(conn)
    assert conn.send(http1.Response(200, [(b"Content-Length", b"2")])) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    )
    assert conn.our_state is http1.SEND_BODY
    assert conn.send(http1.Data(b"ok")) == b"ok"
    assert conn.send(http1.END) == b""
    assert conn.our_state is http1.DONE
    assert conn.next_event() is http1.PAUSED  # until the cycle restarts
    conn.start_next_cycle()
    assert conn.our_state is http1.IDLE and conn.their_state is http1.IDLE
    assert conn.next_event() is http1.NEED_DATA
    conn.receive_data(GET)
    assert isinstance(conn.next_event(), http1.Request)


def test_response_body_beyond_its_content_length_is_refused() -> None:
    conn = http1.ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    conn.send(http1.Response(200, [(b"Content-Length", b"2")], b"Fine"))
    with pytest.raises(http1.LocalProtocolError):
        conn.send(http1.Data(b"too long"))


def test_response_without_length_is_chunked_for_http11() -> None:
    conn = http1.ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    head = conn.send(http1.Response(200, [(b"Content-Type", b"text/plain"),
                                          (b"transfer-encoding", b"chunked")]))  # fmt: skip
    assert head == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    assert conn.send(http1.Data(b"hello")) == b"5\r\nhello\r\n"
    assert conn.send(http1.Data(b"")) == b""  # an empty chunk would end the body
    assert conn.send(http1.Data(b"x" * 26)) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert conn.send(http1.END) == b"0\r\n\r\n"
    assert conn.our_state is http1.DONE


def test_response_without_length_to_http10_is_close_delimited() -> None:
    conn = http1.ServerConnection()
    conn.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    assert drain(conn) == [
        http1.Request(b"GET", b"/", [], b"1.0"),
        http1.EndOfMessage(),
        http1.PAUSED,
    ]
    assert conn.their_state is http1.MUST_CLOSE
    head = conn.send(http1.Response(200, [(b"Content-Type", b"text/plain")]))
    assert head == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    assert conn.send(http1.Data(b"hello")) == b"hello"
    assert conn.send(http1.END) == b""
    assert conn.our_state is http1.MUST_CLOSE
    with pytest.raises(http1.LocalProtocolError):
        conn.start_next_cycle()


def test_head_204_and_304_answers_have_no_body() -> None:
    conn = http1.ServerConnection()
    conn.receive_data(b"HEAD / HTTP/1.1\r\nHost: web\r\n\r\n")
    drain(conn)
    head = conn.send(http1.Response(200, [(b"Content-Length", b"13")]))
    assert head == b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n"
    assert conn.send(http1.Data(b"Hello, world!")) == b""
    assert conn.send(http1.END) == b""
    conn.start_next_cycle()
    for status in (204, 304):
        conn.receive_data(GET)
        drain(conn)
        head = conn.send(http1.Response(status, []))
        assert b"Transfer-Encoding" not in head and b"Connection" not in head
        assert conn.send(http1.END) == b""
        conn.start_next_cycle()


def test_a_response_before_any_request_closes() -> None:
    conn = http1.ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: we")  # a slow head: the edge answers 408
    head = conn.send(http1.Response(408, [(b"Content-Length", b"0")]))
    assert head == b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    conn.send(http1.END)
    assert conn.our_state is http1.MUST_CLOSE


@pytest.mark.parametrize(
    "value", [b"close", b"keep-alive, Close", b"CLOSE", b"keep-alive\r\nConnection: close"]
)
def test_connection_close_from_the_client(value: bytes) -> None:
    conn = http1.ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: " + value + b"\r\n\r\n")
    assert drain(conn)[1:] == [http1.EndOfMessage(), http1.PAUSED]
    assert conn.their_state is http1.MUST_CLOSE
    head = conn.send(http1.Response(200, [(b"Content-Length", b"0")]))
    assert head == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    conn.send(http1.END)
    assert conn.our_state is http1.MUST_CLOSE
    with pytest.raises(http1.LocalProtocolError):
        conn.start_next_cycle()


def test_an_explicit_connection_close_is_not_doubled() -> None:
    conn = http1.ServerConnection()
    conn.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    drain(conn)
    head = conn.send(http1.Response(200, [(b"Content-Length", b"0"), (b"Connection", b"close")]))
    assert head.count(b"Connection") == 1


def test_pipelined_requests_wait_for_the_next_cycle() -> None:
    conn = http1.ServerConnection()
    conn.receive_data(b"GET /1 HTTP/1.1\r\nHost: web\r\n\r\nGET /2 HTTP/1.1\r\nHost: web\r\n\r\n")
    first = drain(conn)
    assert [type(e) for e in first[:2]] == [http1.Request, http1.EndOfMessage]
    assert isinstance(first[0], http1.Request) and first[0].target == b"/1"
    assert first[2] is http1.PAUSED
    assert pending(conn)  # the second request is here already
    assert conn.next_event() is http1.PAUSED
    answer(conn)
    assert conn.next_event() is http1.PAUSED  # still: start_next_cycle() was not called
    assert pending(conn)
    conn.start_next_cycle()
    second = drain(conn)
    assert isinstance(second[0], http1.Request) and second[0].target == b"/2"
    assert second[1:] == [http1.EndOfMessage(), http1.PAUSED]
    assert not pending(conn)


# -- request bodies ------------------------------------------------------------------------------


def test_content_length_body_in_many_pieces() -> None:
    conn = http1.ServerConnection()
    body = bytes(range(256)) * 4
    conn.receive_data(b"POST /up HTTP/1.1\r\nHost: web\r\nContent-Length: 1024\r\n\r\n")
    events = drain(conn)
    assert isinstance(events[0], http1.Request) and events[1] is http1.NEED_DATA
    assert conn.their_state is http1.SEND_BODY
    for start in range(0, len(body), 100):
        conn.receive_data(body[start : start + 100])
        events += drain(conn)
    data = [e for e in events if isinstance(e, http1.Data)]
    assert b"".join(d.data for d in data) == body and len(data) == 11
    assert events[-2:] == [http1.EndOfMessage(), http1.PAUSED]
    assert conn.their_state is http1.DONE


def test_chunked_request_body_is_dechunked() -> None:
    conn = http1.ServerConnection()
    conn.receive_data(
        b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\nA;ext=1\r\n, world!!!\r\n0\r\n\r\n"
    )
    events = merged(drain(conn))
    assert events[0] == http1.Request(
        b"POST", b"/", [(b"Host", b"web"), (b"Transfer-Encoding", b"chunked")]
    )
    assert events[1:] == [http1.Data(b"hello, world!!!"), http1.EndOfMessage(), http1.PAUSED]


def test_chunked_request_body_split_inside_its_framing() -> None:
    wire = b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\n"
    wire += b"abcdefghijklmnopqrstuvwxyz\r\n3\r\nABC\r\n0\r\n\r\n"
    conn = http1.ServerConnection()
    events: list[Item] = []
    for i in range(len(wire)):
        conn.receive_data(wire[i : i + 1])
        events += [e for e in drain(conn) if e is not http1.NEED_DATA]
    assert merged(events)[1:] == [
        http1.Data(b"abcdefghijklmnopqrstuvwxyzABC"),
        http1.EndOfMessage(),
        http1.PAUSED,
    ]


def test_chunk_trailers_do_not_become_request_headers() -> None:
    conn = http1.ServerConnection()
    conn.receive_data(
        b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-Checksum: 1234\r\nHost: elsewhere\r\n\r\n"
    )
    request = conn.next_event()
    assert isinstance(request, http1.Request)
    assert merged(drain(conn)) == [http1.Data(b"hello"), http1.EndOfMessage(), http1.PAUSED]
    # The head's fields only: trailer fields are not request headers (`Host: elsewhere` would
    # reach routing and the target as a second Host).
    assert request.headers == [(b"Host", b"web"), (b"Transfer-Encoding", b"chunked")]


def test_chunk_trailers_do_not_count_as_head() -> None:
    conn = http1.ServerConnection(max_head=1024)
    conn.receive_data(
        b"POST / HTTP/1.1\r\nHost: web\r\nX-Pad: " + b"a" * 900 + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: " + b"b" * 200 + b"\r\n\r\n"
    )  # a head under the limit, a trailer under it too
    assert isinstance(conn.next_event(), http1.Request)
    assert merged(drain(conn)) == [http1.Data(b"hello"), http1.EndOfMessage(), http1.PAUSED]


def test_client_send_rechunks_a_chunked_request() -> None:
    conn = http1.ClientConnection()
    headers = [(b"Host", b"t"), (b"Transfer-Encoding", b"chunked")]
    head = conn.send(http1.Request(b"POST", b"/up", headers))
    assert head == b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert conn.our_state is http1.SEND_BODY
    assert conn.send(http1.Data(b"hello")) == b"5\r\nhello\r\n"
    assert conn.send(http1.Data(b"")) == b""
    assert conn.send(http1.Data(b"0123456789abcdef")) == b"10\r\n0123456789abcdef\r\n"
    assert conn.send(http1.END) == b"0\r\n\r\n"
    assert conn.our_state is http1.DONE
    with pytest.raises(http1.LocalProtocolError):
        conn.send(http1.Data(b"late"))


def test_client_send_passes_a_content_length_body() -> None:
    conn = http1.ClientConnection()
    head = conn.send(http1.Request(b"PUT", b"/x", [(b"Content-Length", b"10")]))
    assert head == b"PUT /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n"
    assert conn.send(http1.Data(b"01234")) == b"01234"
    assert conn.send(http1.Data(b"56789")) == b"56789"
    assert conn.send(http1.END) == b""
    assert conn.our_state is http1.DONE


@pytest.mark.parametrize(
    ("headers", "pieces"),
    [
        ([(b"Content-Length", b"3")], [b"abcd"]),
        ([(b"Content-Length", b"3")], [b"ab", b"cd"]),
        ([], [b"a"]),  # no length: no body
    ],
)
def test_client_send_refuses_too_much_body(headers: http1.Headers, pieces: list[bytes]) -> None:
    conn = http1.ClientConnection()
    conn.send(http1.Request(b"POST", b"/", headers))
    for piece in pieces[:-1]:
        conn.send(http1.Data(piece))
    with pytest.raises(http1.LocalProtocolError):
        conn.send(http1.Data(pieces[-1]))


def test_client_send_refuses_too_little_body() -> None:
    conn = http1.ClientConnection()
    conn.send(http1.Request(b"POST", b"/", [(b"Content-Length", b"3")]))
    conn.send(http1.Data(b"ab"))
    with pytest.raises(http1.LocalProtocolError):
        conn.send(http1.END)


def test_client_send_one_request_at_a_time() -> None:
    conn = requested()
    with pytest.raises(http1.LocalProtocolError):
        conn.send(http1.Request(b"GET", b"/again", []))
    with pytest.raises(http1.LocalProtocolError):
        conn.start_next_cycle()  # the response did not come yet


# -- Expect: 100-continue ------------------------------------------------------------------------


def _expecting() -> http1.ServerConnection:
    conn = http1.ServerConnection()
    conn.receive_data(
        b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nExpect: 100-Continue\r\n\r\n"
    )
    assert not waiting(conn)  # not before the request is read
    assert isinstance(conn.next_event(), http1.Request)
    assert waiting(conn)
    assert conn.next_event() is http1.NEED_DATA
    assert waiting(conn)
    return conn


def test_expect_100_continue_until_body_arrives() -> None:
    conn = _expecting()
    conn.receive_data(b"he")
    assert waiting(conn)  # until the Data event is read
    assert conn.next_event() == http1.Data(b"he")
    assert not waiting(conn)


def test_expect_100_continue_until_continue_is_sent() -> None:
    conn = _expecting()
    assert conn.send(http1.InformationalResponse(100)) == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert not waiting(conn)
    assert conn.our_state is http1.SEND_RESPONSE  # the response is still due


def test_expect_100_continue_until_a_response_is_sent() -> None:
    conn = _expecting()
    conn.send(http1.Response(417, [(b"Content-Length", b"0")]))
    assert not waiting(conn)


def test_no_expectation_without_expect() -> None:
    conn = http1.ServerConnection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n\r\n")
    conn.next_event()
    assert not waiting(conn)


# -- head limit ----------------------------------------------------------------------------------


def _raises_431(conn: http1.ServerConnection) -> None:
    with pytest.raises(http1.RemoteProtocolError) as caught:
        conn.next_event()
    assert caught.value.status_hint == 431


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: web\r\nX-Pad: " + b"a" * 2000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: web\r\n" + b"X-Pad: aaaaaaaaaaaa\r\n" * 100 + b"\r\n",
        b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: web\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: web\r\nX-Pad: " + b"a" * 2000,  # and no end yet
    ],
    ids=["long-value", "many-headers", "long-target", "incomplete"],
)
def test_head_over_the_limit_in_one_chunk(head: bytes) -> None:
    conn = http1.ServerConnection(max_head=1024)
    conn.receive_data(head)
    _raises_431(conn)


def test_request_line_alone_over_the_limit() -> None:
    conn = http1.ServerConnection(max_head=1024)
    conn.receive_data(b"GET /" + b"a" * 3000 + b" HTTP/1.0\r\n\r\n")  # no header fields
    _raises_431(conn)


@pytest.mark.parametrize("opening", [b"GET / HTTP/1.1\r\nHost: web\r\nX-Pad: ", b"GET /"])
def test_head_trickled_without_end(opening: bytes) -> None:
    conn = http1.ServerConnection(max_head=1024)
    conn.receive_data(opening)
    fed = len(opening)
    while fed <= 1024:
        assert conn.next_event() is http1.NEED_DATA
        conn.receive_data(b"a" * 10)
        fed += 10
    _raises_431(conn)


def test_small_head_then_large_body_in_one_chunk_is_no_431() -> None:
    conn = http1.ServerConnection(max_head=1024)
    body = b"x" * 5000
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 5000\r\n\r\n" + body)
    events = merged(drain(conn))
    assert isinstance(events[0], http1.Request)
    assert events[1:] == [http1.Data(body), http1.EndOfMessage(), http1.PAUSED]


def test_small_head_then_large_partial_body_is_no_431() -> None:
    conn = http1.ServerConnection(max_head=1024)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 9000\r\n\r\n" + b"x" * 4000)
    conn.receive_data(b"x" * 4000)
    events = merged(drain(conn))
    assert events[1:] == [http1.Data(b"x" * 8000), http1.NEED_DATA]


def test_pipelined_requests_after_a_large_body_are_no_431() -> None:
    conn = http1.ServerConnection(max_head=1024)
    conn.receive_data(
        b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000
        + b"GET /2 HTTP/1.1\r\nHost: web\r\n\r\nGET /3 HTTP/1.1\r\nHost: web\r\n\r\nGET /4 HTT"
    )  # fmt: skip
    targets = []
    for _ in range(3):
        events = drain(conn)
        assert events[-2:] == [http1.EndOfMessage(), http1.PAUSED]
        assert isinstance(events[0], http1.Request)
        targets.append(events[0].target)
        answer(conn)
        conn.start_next_cycle()
    assert targets == [b"/", b"/2", b"/3"]
    assert conn.next_event() is http1.NEED_DATA
    conn.receive_data(b"P/1.1\r\nHost: web\r\n\r\n")
    request = conn.next_event()
    assert isinstance(request, http1.Request) and request.target == b"/4"


def test_many_heads_under_the_limit_trickled() -> None:
    conn = http1.ServerConnection(max_head=1024)
    head = b"GET / HTTP/1.1\r\nHost: web\r\nX-Pad: " + b"a" * 900 + b"\r\n\r\n"
    for _ in range(3):
        for i in range(0, len(head), 7):
            conn.receive_data(head[i : i + 7])
        assert [type(e) for e in drain(conn)] == [
            http1.Request, http1.EndOfMessage, http1.State
        ]  # fmt: skip
        answer(conn)
        conn.start_next_cycle()


# -- malformed input and EOF ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        b"NOT A REQUEST\r\n\r\n",
        b"GET / HTTX/1.1\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: web\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS to the plain port
        b"GET / HTTP/1.1\r\nBad Header: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ],
)
def test_malformed_request_is_400_and_stays(wire: bytes) -> None:
    conn = http1.ServerConnection()
    conn.receive_data(wire)
    for _ in range(2):
        with pytest.raises(http1.RemoteProtocolError) as caught:
            conn.next_event()
        assert caught.value.status_hint == 400
    conn.receive_data(GET)
    with pytest.raises(http1.RemoteProtocolError):
        conn.next_event()


def test_eof_at_idle_is_connection_closed() -> None:
    conn = http1.ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    answer(conn)
    conn.start_next_cycle()
    conn.receive_data(b"")
    assert conn.next_event() == http1.ConnectionClosed()
    assert conn.their_state is http1.CLOSED
    assert conn.trailing_data == (b"", True)


@pytest.mark.parametrize(
    "wire",
    [
        b"GET / HTTP/1.1\r\nHo",
        b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 10\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    ],
    ids=["mid-head", "mid-length-body", "mid-chunked-body"],
)
def test_eof_mid_request_is_an_error(wire: bytes) -> None:
    conn = http1.ServerConnection()
    conn.receive_data(wire)
    drain(conn)
    conn.receive_data(b"")
    with pytest.raises(http1.RemoteProtocolError):
        conn.next_event()


# -- upgrade -------------------------------------------------------------------------------------


def test_upgrade_keeps_what_followed_the_head() -> None:
    conn = http1.ServerConnection()
    conn.receive_data(UPGRADE + FRAME)
    events = drain(conn)
    assert isinstance(events[0], http1.Request) and events[0].target == b"/ws"
    assert events[1:] == [http1.EndOfMessage(), http1.PAUSED]
    assert conn.trailing_data == (FRAME, False)
    assert pending(conn)
    conn.receive_data(b"more")
    assert conn.trailing_data == (FRAME + b"more", False)
    assert conn.next_event() is http1.PAUSED
    head = conn.send(http1.InformationalResponse(
        101, [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")]
    ))  # fmt: skip
    assert head == (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    assert conn.our_state is http1.SWITCHED and conn.their_state is http1.SWITCHED
    assert conn.next_event() is http1.PAUSED
    conn.receive_data(b"")
    assert conn.trailing_data == (FRAME + b"more", True)


def test_upgrade_head_split_keeps_what_followed() -> None:
    conn = http1.ServerConnection()
    conn.receive_data(UPGRADE[:30])
    conn.receive_data(UPGRADE[30:] + FRAME)
    assert [type(e) for e in drain(conn)] == [http1.Request, http1.EndOfMessage, http1.State]
    assert conn.trailing_data == (FRAME, False)


def test_declined_upgrade_parses_what_followed_as_the_next_request() -> None:
    conn = http1.ServerConnection()
    conn.receive_data(UPGRADE + b"GET /next HTTP/1.1\r\n")
    drain(conn)
    conn.receive_data(b"Host: web\r\n\r\nGET /last HTTP/1.1\r\nHost: web\r\n\r\n")
    answer(conn)
    conn.start_next_cycle()
    assert conn.trailing_data == (b"", False)
    events = drain(conn)
    assert isinstance(events[0], http1.Request) and events[0].target == b"/next"
    assert events[1:] == [http1.EndOfMessage(), http1.PAUSED]
    answer(conn)
    conn.start_next_cycle()
    events = drain(conn)
    assert isinstance(events[0], http1.Request) and events[0].target == b"/last"


def test_pipelined_upgrade_keeps_what_followed_its_own_head() -> None:
    conn = http1.ServerConnection()
    conn.receive_data(GET + UPGRADE + FRAME)
    first = drain(conn)
    assert isinstance(first[0], http1.Request) and first[0].target == b"/"
    answer(conn)
    conn.start_next_cycle()  # the first request's cycle: the upgrade is not answered yet
    second = drain(conn)
    assert isinstance(second[0], http1.Request) and second[0].target == b"/ws"
    assert second[1:] == [http1.EndOfMessage(), http1.PAUSED]
    assert conn.trailing_data == (FRAME, False)


# -- client: responses in ------------------------------------------------------------------------


def test_response_with_content_length() -> None:
    conn = requested()
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Case: Kept\r\n\r\nhel")
    events = drain(conn)
    assert events[0] == http1.Response(
        200, [(b"Content-Length", b"5"), (b"X-Case", b"Kept")], b"OK", b"1.1"
    )
    assert events[1:] == [http1.Data(b"hel"), http1.NEED_DATA]
    assert conn.their_state is http1.SEND_BODY
    conn.receive_data(b"lo")
    assert drain(conn) == [http1.Data(b"lo"), http1.EndOfMessage(), http1.PAUSED]
    assert conn.their_state is http1.DONE and not pending(conn)
    conn.start_next_cycle()
    assert conn.our_state is http1.IDLE and conn.their_state is http1.IDLE


def test_chunked_response_is_dechunked() -> None:
    conn = requested()
    conn.receive_data(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n"
    )
    events = merged(drain(conn))
    assert isinstance(events[0], http1.Response)
    assert events[1:] == [
        http1.Data(b"Wikipedia in\r\n\r\nchunks."),
        http1.EndOfMessage(),
        http1.PAUSED,
    ]
    assert conn.their_state is http1.DONE


def test_head_response_ends_at_its_head() -> None:
    conn = requested(b"HEAD")
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n")
    events = drain(conn)
    assert events[0] == http1.Response(200, [(b"Content-Length", b"13")], b"OK")
    assert events[1:] == [http1.EndOfMessage(), http1.PAUSED]
    assert conn.their_state is http1.DONE and not pending(conn)
    conn.start_next_cycle()
    conn.send(http1.Request(b"GET", b"/", []))
    conn.send(http1.END)
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert merged(drain(conn))[1:] == [http1.Data(b"hi"), http1.EndOfMessage(), http1.PAUSED]


def test_head_response_without_length_keeps_the_connection() -> None:
    conn = requested(b"HEAD")
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n")
    assert drain(conn)[1:] == [http1.EndOfMessage(), http1.PAUSED]
    # A HEAD answer has no body whatever its head says: nothing is delimited by the close.
    assert conn.their_state is http1.DONE


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int) -> None:
    conn = requested()
    conn.receive_data(b"HTTP/1.1 %d X\r\nETag: 1\r\n\r\n" % status)
    events = drain(conn)
    assert events[0] == http1.Response(status, [(b"ETag", b"1")], b"X")
    assert events[1:] == [http1.EndOfMessage(), http1.PAUSED]
    assert conn.their_state is http1.DONE


def test_continue_then_response() -> None:
    conn = requested()
    conn.receive_data(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert drain(conn) == [http1.InformationalResponse(100, [], b"Continue"), http1.NEED_DATA]
    assert conn.their_state is http1.IDLE
    conn.receive_data(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n")
    conn.receive_data(b"Content-Length: 2\r\n\r\nok")
    assert drain(conn) == [
        http1.InformationalResponse(103, [(b"Link", b"</a>")], b"Early Hints"),
        http1.Response(200, [(b"Content-Length", b"2")], b"OK"),
        http1.Data(b"ok"),
        http1.EndOfMessage(),
        http1.PAUSED,
    ]


def test_switching_protocols_keeps_what_followed() -> None:
    conn = requested()
    conn.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        + FRAME
    )
    events = drain(conn)
    assert events == [
        http1.InformationalResponse(
            101, [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")], b"Switching Protocols"
        ),
        http1.PAUSED,
    ]
    assert conn.their_state is http1.SWITCHED
    assert conn.trailing_data == (FRAME, False)
    conn.receive_data(b"\x81\x00")
    conn.receive_data(b"")
    assert conn.trailing_data == (FRAME + b"\x81\x00", True)


def test_close_delimited_response() -> None:
    conn = requested()
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc")
    events = drain(conn)
    assert events[1:] == [http1.Data(b"abc"), http1.NEED_DATA]
    conn.receive_data(b"def")
    assert drain(conn) == [http1.Data(b"def"), http1.NEED_DATA]
    conn.receive_data(b"")
    assert conn.next_event() == http1.EndOfMessage()
    assert conn.their_state is http1.MUST_CLOSE
    assert conn.next_event() is http1.PAUSED
    assert conn.trailing_data[1]
    with pytest.raises(http1.LocalProtocolError):
        conn.start_next_cycle()


def test_http10_response_without_length_is_close_delimited() -> None:
    conn = requested()
    conn.receive_data(b"HTTP/1.0 200 OK\r\n\r\nabc")
    events = drain(conn)
    assert events[0] == http1.Response(200, [], b"OK", b"1.0")
    conn.receive_data(b"")
    assert conn.next_event() == http1.EndOfMessage()
    assert conn.their_state is http1.MUST_CLOSE


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: Keep-Alive, Close\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
    ],
)
def test_response_that_closes(head: bytes) -> None:
    conn = requested()
    conn.receive_data(head + b"ok")
    assert drain(conn)[1:] == [http1.Data(b"ok"), http1.EndOfMessage(), http1.PAUSED]
    assert conn.their_state is http1.MUST_CLOSE


def test_bytes_after_a_complete_response_are_pending() -> None:
    conn = requested()
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    drain(conn)
    assert not pending(conn)
    conn.receive_data(b"HTTP/1.1 200")
    assert pending(conn)
    conn = requested()
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 5")
    drain(conn)
    assert pending(conn) and conn.their_state is http1.DONE


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ],
    ids=["length", "chunked", "head"],
)
def test_eof_mid_response_is_an_error(wire: bytes) -> None:
    conn = requested()
    conn.receive_data(wire)
    drain(conn)
    conn.receive_data(b"")
    with pytest.raises(http1.RemoteProtocolError):
        conn.next_event()


def test_malformed_response_is_an_error() -> None:
    conn = requested()
    conn.receive_data(b"SSH-2.0-OpenSSH_9.6\r\n")
    with pytest.raises(http1.RemoteProtocolError):
        conn.next_event()


# -- header validation on send -------------------------------------------------------------------


BAD_HEADERS = [
    (b"X-A", b"a\rb"),
    (b"X-A", b"a\nb"),
    (b"X-A", b"ok\r\nX-Injected: 1"),
    (b"X-A\r\nX-B", b"1"),
    (b"X-A: 1\r\nX-B", b"1"),
]


@pytest.mark.parametrize("bad", BAD_HEADERS)
def test_server_refuses_to_send_a_broken_header(bad: tuple[bytes, bytes]) -> None:
    conn = http1.ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    with pytest.raises(http1.LocalProtocolError):
        conn.send(http1.Response(200, [(b"Content-Length", b"0"), bad]))
    with pytest.raises(http1.LocalProtocolError):
        conn.send(http1.InformationalResponse(103, [bad]))


@pytest.mark.parametrize("bad", BAD_HEADERS)
def test_client_refuses_to_send_a_broken_header(bad: tuple[bytes, bytes]) -> None:
    conn = http1.ClientConnection()
    with pytest.raises(http1.LocalProtocolError):
        conn.send(http1.Request(b"GET", b"/", [(b"Host", b"t"), bad]))


def test_header_lookup_is_case_insensitive() -> None:
    headers = [(b"Content-Type", b"a"), (b"content-type", b"b")]
    assert http1.header(headers, b"content-type") == b"a"
    assert http1.header(headers, b"accept") is None


# -- arbitrary splitting -------------------------------------------------------------------------


@st.composite
def request_wire(draw: st.DrawFn) -> tuple[bytes, list[Item]]:
    """One request's bytes and the events it should parse into (bodies merged)."""
    kind = draw(st.sampled_from(["get", "length", "chunked"]))
    target = b"/" + draw(st.text("ab/?=%", max_size=8)).encode()
    body = b"" if kind == "get" else draw(st.binary(max_size=48))
    headers: http1.Headers = [(b"Host", b"web")]
    if kind == "length":
        headers.append((b"Content-Length", str(len(body)).encode()))
        framed = body
    elif kind == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        sizes = draw(st.lists(st.integers(1, 20), max_size=4))
        pieces, rest = [], body
        for size in sizes:
            if rest:
                pieces.append(rest[:size])
                rest = rest[size:]
        if rest:
            pieces.append(rest)
        framed = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    else:
        framed = b""
    method = b"GET" if kind == "get" else b"POST"
    head = b"%b %b HTTP/1.1\r\n" % (method, target)
    head += b"".join(b"%b: %b\r\n" % pair for pair in headers) + b"\r\n"
    expected: list[Item] = [http1.Request(method, target, headers)]
    if body:
        expected.append(http1.Data(body))
    expected.append(http1.EndOfMessage())
    return head + framed, expected


def serve(chunks: list[bytes]) -> list[Item]:
    """Feed `chunks` one by one; answer each request as soon as it ended and go on."""
    conn = http1.ServerConnection(max_head=256)
    out: list[Item] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not http1.NEED_DATA:
            if event is http1.PAUSED:
                answer(conn)
                conn.start_next_cycle()
            else:
                out.append(event)
    return merged(out)


@settings(max_examples=100, deadline=None)
@given(requests=st.lists(request_wire(), min_size=1, max_size=4), data=st.data())
def test_any_split_parses_like_the_whole(
    requests: list[tuple[bytes, list[Item]]], data: st.DataObject
) -> None:
    wire = b"".join(w for w, _ in requests)
    expected = [e for _, events in requests for e in events]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    chunks = [c for c in chunks if c]  # b"" is the client's EOF
    assert serve([wire]) == expected
    assert serve(chunks) == expected
