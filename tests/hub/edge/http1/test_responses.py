"""The client side of the edge's HTTP/1.1 (`http1.ClientConnection`): one request at a time,
and the responses that come back."""

from __future__ import annotations

import pytest

from portway.hub.edge import http1
from tests.hub.edge.http1.driving import FRAME, drain, merged, pending, requested

# -- client: one request at a time ---------------------------------------------------------------


def test_client_send_one_request_at_a_time() -> None:
    conn = requested()
    with pytest.raises(http1.LocalProtocolError):
        conn.send(http1.Request(b"GET", b"/again", []))
    with pytest.raises(http1.LocalProtocolError):
        conn.start_next_cycle()  # the response did not come yet


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
