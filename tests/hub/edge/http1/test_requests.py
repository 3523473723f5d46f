"""The server side of the edge's HTTP/1.1 (`http1.ServerConnection`): requests in, responses
out, `Expect: 100-continue`, and upgrades."""

from __future__ import annotations

import pytest

from portway.hub.edge import http1
from tests.hub.edge.http1.driving import FRAME, GET, UPGRADE, answer, drain, pending


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
