"""Client timeouts of the edge, against a real hub configured (through its `PORTWAY_EDGE_*`
variables) with timeouts of about a second: a request head that does not arrive whole gets a
408, an idle kept-alive connection is closed, a stalled request body gets a 408, while kept-alive
sequences, slow but steady uploads, slow readers and quiet WebSockets are left alone."""

from __future__ import annotations

import http.client
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from portway.testing.http_origin import encode_frame, read_frame
from portway.testing.hub import HubProcess
from tests.e2e.test_edge import edge_port

pytestmark = pytest.mark.e2e

HEAD, IDLE, BODY = 1.0, 1.5, 1.0
SLACK = 1.5  # timer granularity and a loaded machine


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    env = {
        "PORTWAY_EDGE_HEAD_TIMEOUT": str(HEAD),
        "PORTWAY_EDGE_IDLE_TIMEOUT": str(IDLE),
        "PORTWAY_EDGE_BODY_TIMEOUT": str(BODY),
    }
    process = HubProcess(tmp_path_factory.mktemp("e2e") / "hub", env=env)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def connect(hub: HubProcess) -> Iterator[Callable[[], socket.socket]]:
    made: list[socket.socket] = []

    def make() -> socket.socket:
        made.append(socket.create_connection(("127.0.0.1", edge_port(hub)), timeout=10))
        return made[-1]

    yield make
    for sock in made:
        sock.close()


def read_to_end(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, float]:
    """Everything the edge sends until it closes the connection, and when it closed it."""
    started = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic() - started


def test_half_a_request_head_gets_408_after_the_head_timeout(
    connect: Callable[[], socket.socket],
) -> None:
    sock = connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: nope.localhost\r\nX-Slow: ")
    answer, elapsed = read_to_end(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer.lower()
    assert HEAD * 0.9 <= elapsed < HEAD + SLACK


def test_a_trickled_head_does_not_extend_the_deadline(
    connect: Callable[[], socket.socket],
) -> None:
    sock = connect()
    started = time.monotonic()
    sock.sendall(b"GET / HTTP/1.1\r\n")
    while not select.select([sock], [], [], 0.1)[0]:  # a slowloris client: a byte now and then
        sock.sendall(b"X")
        assert time.monotonic() - started < HEAD + SLACK, "the trickle kept the head open"
    answer, _ = read_to_end(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_connection_that_sends_nothing_is_closed_silently(
    connect: Callable[[], socket.socket],
) -> None:
    answer, elapsed = read_to_end(connect())
    assert answer == b""
    assert HEAD * 0.9 <= elapsed < HEAD + SLACK


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(
    connect: Callable[[], socket.socket],
) -> None:
    sock = connect()
    conn = http.client.HTTPConnection("127.0.0.1")
    conn.sock = sock
    conn.request("GET", "/", headers={"Host": "nope.localhost"})
    response = conn.getresponse()
    assert response.status == 404 and not response.will_close
    response.read()
    answer, elapsed = read_to_end(sock)
    conn.close()
    assert answer == b""  # closed without a word, like nginx's keepalive_timeout
    assert IDLE * 0.9 <= elapsed < IDLE + SLACK


def test_kept_alive_requests_and_a_slow_steady_upload_still_work(
    hub: HubProcess, web: dict[str, Any]
) -> None:
    host = urlsplit(web["publicUrl"]).netloc
    conn = http.client.HTTPConnection("127.0.0.1", edge_port(hub), timeout=10)
    try:
        first = None
        for i in range(4):  # 2.4 s on one connection: longer than every timeout
            conn.request("GET", f"/echo/{i}", headers={"Host": host})
            response = conn.getresponse()
            assert response.status == 200 and b"/echo/" in response.read()
            first = first or conn.sock
            assert conn.sock is first
            # The point, so a timed pause: well inside the idle timeout, adding up past all of them.
            time.sleep(IDLE * 0.4)

        def steady() -> Iterator[bytes]:  # 3.2 s of upload, a piece every 0.4 s
            for _ in range(8):
                # The point, so a timed pause: slower than a burst, faster than the body timeout.
                time.sleep(BODY * 0.4)
                yield b"y" * 1000

        conn.request("POST", "/up", body=steady(), headers={"Host": host})
        response = conn.getresponse()
        assert response.status == 200 and b'"size": 8000' in response.read()
        assert conn.sock is first
    finally:
        conn.close()


def test_a_stalled_request_body_gets_408(
    hub: HubProcess, web: dict[str, Any], connect: Callable[[], socket.socket]
) -> None:
    host = urlsplit(web["publicUrl"]).netloc
    sock = connect()
    sock.sendall(
        f"POST /up HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000\r\n\r\n".encode() + b"z" * 100
    )
    answer, elapsed = read_to_end(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert BODY * 0.9 <= elapsed < BODY + SLACK


def test_a_head_over_the_size_cap_gets_431(connect: Callable[[], socket.socket]) -> None:
    sock = connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: nope.localhost\r\nX-Big: " + b"a" * 70_000)
    answer, _ = read_to_end(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_slow_readers_and_quiet_websockets_are_left_alone(
    hub: HubProcess, web: dict[str, Any], connect: Callable[[], socket.socket]
) -> None:
    host = urlsplit(web["publicUrl"]).netloc
    download = connect()
    download.sendall(f"GET /download/{1 << 40} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert download.recv(65536).startswith(b"HTTP/1.1 200")
    ws = connect()
    ws.sendall(
        f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    reader = ws.makefile("rb")
    assert b" 101 " in reader.readline()
    while reader.readline() not in (b"\r\n", b""):
        pass
    # A bounded wait on purpose: nothing may happen for longer than any edge timeout. It fails as
    # soon as the edge writes to the quiet WebSocket or closes it (EOF makes it readable too).
    quiet = max(HEAD, IDLE, BODY) + SLACK
    assert select.select([ws], [], [], quiet)[0] == [], "the edge cut a quiet WebSocket"
    ws.sendall(encode_frame(1, b"still here", mask=True))
    assert read_frame(reader.read) == (1, b"still here")
    reader.close()
    received = 0
    while received < 8 << 20:  # the download was only waiting for its reader
        chunk = download.recv(1 << 20)
        assert chunk
        received += len(chunk)
