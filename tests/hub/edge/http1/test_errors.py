"""What the server refuses (`http1.RemoteProtocolError`): heads over `max_head` (431) and what
must not count against it, malformed requests (400), and EOF in the middle of a request."""

from __future__ import annotations

import pytest

from portway.hub.edge import http1
from tests.hub.edge.http1.driving import GET, answer, drain, merged

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
    assert conn.next_event() == http1.PeerClosed()
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
