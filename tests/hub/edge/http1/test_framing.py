"""Bodies and heads on the wire (`http1.framing`): request bodies by length and chunked, the
bodies a client sends, broken header fields refused on the way out, and any split of the
bytes parsing like the whole."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portway.hub.edge import http1
from tests.hub.edge.http1.driving import GET, Item, answer, drain, merged

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
