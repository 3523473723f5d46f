"""The HTTP origin the benchmark drives: a tiny asyncio responder on uvloop, one process.

Every request gets the same 13-byte ``200 OK`` (pipelining and keep-alive supported, requests
with ``Connection: close`` are answered and closed). ``GET /_stats`` answers the number of
connections open right now, so the memory scenario can tell when its idle connections have all
reached the origin. It holds idle connections forever at a few hundred bytes each, and serves
60-80k requests/s on one core, so it is not the bottleneck of any path measured here (the direct
path shows its ceiling).

With ``--echo`` it is instead a TCP echo server (every byte read is written back at once): the
origin of the fairness scenario's round trips.

Run as ``python -m bench.origin [--echo] PORT``; it prints ``ready`` once listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import cast

BODY = b"Hello, world\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s" % (
    len(BODY),
    BODY,
)
OK_CLOSE = (
    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n"
    b"Connection: close\r\n\r\n%s" % (len(BODY), BODY)
)
MAX_HEAD = 64 * 1024


class Origin(asyncio.Protocol):
    """One client connection: answers each complete request head (GET requests, no bodies)."""

    open_count = 0

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        Origin.open_count += 1

    def connection_lost(self, exc: Exception | None) -> None:
        Origin.open_count -= 1

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        out: list[bytes] = []
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end]
            self.buffer = self.buffer[end + 4 :]
            lowered = head.lower()
            if head.startswith(b"GET /_stats "):
                body = b"%d\n" % Origin.open_count
                out.append(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                self.transport.write(b"".join(out))
                self.transport.close()  # always the last answer on its connection
                return
            if b"\r\nconnection: close" in lowered:
                out.append(OK_CLOSE)
                self.transport.write(b"".join(out))
                self.transport.close()
                return
            out.append(OK)
        if out:
            self.transport.write(b"".join(out))
        if len(self.buffer) > MAX_HEAD:
            self.transport.close()


class Echo(asyncio.Protocol):
    """One client connection of the echo origin: writes back whatever it reads."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


async def serve(port: int, echo: bool = False) -> None:
    loop = asyncio.get_running_loop()
    protocol: type[asyncio.Protocol] = Echo if echo else Origin
    server = await loop.create_server(protocol, "127.0.0.1", port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    args = sys.argv[1:]
    echo = "--echo" in args
    port = int(next(arg for arg in args if arg != "--echo"))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a Portway dependency on Linux
        asyncio.run(serve(port, echo))
    else:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(serve(port, echo))


if __name__ == "__main__":
    main()
