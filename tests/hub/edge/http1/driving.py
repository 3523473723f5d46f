"""Driving the edge's sans-IO HTTP/1.1 connections in tests: requests on the wire, the events
a connection gives until it waits, an answer sent, a client whose request went out."""

from __future__ import annotations

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
