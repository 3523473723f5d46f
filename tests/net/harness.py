"""Real loopback building blocks for splice tests: targets, relays, version 2 sessions and
clients, all tracked so that a test ends with every transport closed (a leak would fail it with a
ResourceWarning)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from portway.net.mux import MuxConnection, OpenHandler
from portway.net.mux_stream import MuxStream
from portway.net.mux_transport import StreamTransport
from portway.net.splice import Leg, Splice
from portway.wire.codes import Reason
from portway.wire.mux import MuxSession

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
T = TypeVar("T")
DEADLINE = 20.0
POLL_INTERVAL = 0.001  # wait_until re-checks its condition this often


@dataclass
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


@dataclass
class Relay:
    port: int
    splices: list[Splice]


@dataclass
class Chain:
    entry: Relay
    hub: Relay
    exposer: Relay

    @property
    def port(self) -> int:
        return self.entry.port

    def connected(self, count: int = 1) -> bool:
        """True once ``count`` client connections have a splice on every relay, all attached."""
        relays = (self.entry, self.hub, self.exposer)
        return all(
            len(r.splices) >= count
            and all(s.a.transport is not None and s.b.transport is not None for s in r.splices)
            for r in relays
        )

    def splices(self, index: int = 0) -> list[Splice]:
        """The splices of the ``index``-th connection, entry first."""
        return [r.splices[index] for r in (self.entry, self.hub, self.exposer)]


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` on every loop turn (with a tiny sleep) until true; fail after a
    generous deadline. Tests wait for states, never for fixed times."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(POLL_INTERVAL)


def rst_close(writer: asyncio.StreamWriter) -> None:
    """Close a stream with a TCP RST, as a crashing peer would."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def refuse(stream: MuxStream, first: memoryview) -> int:
    """The ``on_open`` of a session end that never accepts streams."""
    stream.reset(Reason.DENIED)
    return 0


class Harness:
    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.sessions: list[MuxConnection] = []
        self.splices: list[Splice] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` as a task that teardown cancels and awaits if the test did not."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        return task

    async def target(self, handler: Handler, *, ssl_context: ssl.SSLContext | None = None) -> int:
        """A stream server whose handler runs as a tracked task and whose socket is closed after."""

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            try:
                await handler(reader, writer)
            finally:
                writer.close()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.spawn(run(reader, writer))

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=ssl_context)
        self.servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    def splice(self, relay: Relay, limit: int) -> Splice:
        splice = Splice(limit=limit)
        self.splices.append(splice)
        relay.splices.append(splice)
        return splice

    async def relay(
        self, *, dial_port: int, client_ssl: ssl.SSLContext | None = None, limit: int = 256 * 1024
    ) -> Relay:
        """Listen; splice each accepted connection (leg ``a``) to a new dial (leg ``b``), over
        TLS with ``client_ssl``."""
        loop = asyncio.get_running_loop()
        relay = Relay(port=0, splices=[])

        def factory() -> Leg:
            splice = self.splice(relay, limit)

            async def dial() -> None:
                try:
                    await loop.create_connection(
                        splice.connector(splice.b),
                        "127.0.0.1",
                        dial_port,
                        ssl=client_ssl,
                        server_hostname="localhost" if client_ssl else None,
                    )
                except ConnectionRefusedError:
                    splice.reset(Reason.TARGET_REFUSED)

            self.spawn(dial())
            return splice.a

        server = await loop.create_server(factory, "127.0.0.1", 0)
        self.servers.append(server)
        relay.port = server.sockets[0].getsockname()[1]
        return relay

    async def session(self, on_open: OpenHandler, *, tls: Tls | None = None) -> MuxConnection:
        """A version 2 session on loopback (over TLS with ``tls``); returns its dialling end.
        Every stream that end opens reaches ``on_open`` at the accepting end."""
        loop = asyncio.get_running_loop()
        accepted: list[MuxConnection] = []

        def accept() -> MuxConnection:
            accepted.append(MuxConnection(MuxSession(client=False), on_open, name="accepting"))
            self.sessions.append(accepted[-1])
            return accepted[-1]

        server = await loop.create_server(accept, "127.0.0.1", 0, ssl=tls.server if tls else None)
        self.servers.append(server)
        _, dialling = await loop.create_connection(
            lambda: MuxConnection(MuxSession(client=True), refuse, name="dialling"),
            "127.0.0.1",
            server.sockets[0].getsockname()[1],
            ssl=tls.client if tls else None,
            server_hostname="localhost" if tls else None,
        )
        self.sessions.append(dialling)
        await wait_until(
            lambda: bool(accepted) and accepted[0].transport is not None, "the session is up"
        )
        return dialling

    async def chain(
        self,
        target_port: int,
        *,
        tls: Tls | None = None,
        gate: asyncio.Event | None = None,
        limit: int = 256 * 1024,
    ) -> Chain:
        """client → entry → hub → exposer → target, a splice at every hop (socket ↔ stream,
        stream ↔ stream, stream ↔ socket), shaped like the reach path.

        The entry splices each client to a new stream of its session to the hub (opened once
        ``gate`` is set, if given: the client is "pending" meanwhile), the hub splices that
        stream to a new stream of its session to the exposer, and the exposer splices that one
        to a dial of the target. With ``tls`` both sessions run over TLS with the hub's CA.
        """
        loop = asyncio.get_running_loop()
        entry, hub, exposer = Relay(0, []), Relay(0, []), Relay(0, [])

        def exposer_open(stream: MuxStream, first: memoryview) -> int:
            splice = self.splice(exposer, limit)
            StreamTransport(stream, splice.a)

            async def dial() -> None:
                try:
                    await loop.create_connection(
                        splice.connector(splice.b), "127.0.0.1", target_port
                    )
                except ConnectionRefusedError:
                    splice.reset(Reason.TARGET_REFUSED)

            self.spawn(dial())
            return 0

        to_exposer = await self.session(exposer_open, tls=tls)

        def hub_open(stream: MuxStream, first: memoryview) -> int:
            splice = self.splice(hub, limit)
            StreamTransport(stream, splice.a)
            StreamTransport(to_exposer.open_stream(), splice.b)
            return 0

        to_hub = await self.session(hub_open, tls=tls)

        def client() -> Leg:
            splice = self.splice(entry, limit)

            async def open_stream() -> None:
                if gate is not None:
                    await gate.wait()
                StreamTransport(to_hub.open_stream(), splice.b)

            self.spawn(open_stream())
            return splice.a

        server = await loop.create_server(client, "127.0.0.1", 0)
        self.servers.append(server)
        entry.port = server.sockets[0].getsockname()[1]
        return Chain(entry, hub, exposer)

    async def connect(
        self, port: int, *, limit: int = 2**16
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=limit)
        self.writers.append(writer)
        return reader, writer

    async def aclose(self) -> None:
        for server in self.servers:
            server.close()
        for splice in self.splices:
            splice.reset(Reason.CLOSED)  # a no-op for splices that finished
        for writer in self.writers:
            writer.transport.abort() if writer.transport.is_closing() else writer.close()
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        for splice in self.splices:
            await asyncio.wait_for(splice.wait_closed(), DEADLINE)
        for writer in self.writers:
            with contextlib.suppress(OSError):
                await asyncio.wait_for(writer.wait_closed(), DEADLINE)
        for connection in self.sessions:
            if connection.transport is not None:
                connection.transport.abort()
        await wait_until(
            lambda: all(c.transport is None for c in self.sessions), "every session is closed"
        )
        for server in self.servers:
            await server.wait_closed()


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> bytes:
    """Send ``data`` then shut down our write side, while reading the reply until EOF."""

    async def send() -> None:
        writer.write(data)
        await writer.drain()
        writer.write_eof()

    sender = asyncio.get_running_loop().create_task(send())
    reply = await reader.read()
    await sender
    return reply


def hash_server(reply: bytes) -> Handler:
    """Target that streams ``reply`` while hashing what it receives, and once the client has
    half-closed appends the hex SHA-256 of everything received, then closes its side."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send() -> None:
            writer.write(reply)
            await writer.drain()

        sender = asyncio.get_running_loop().create_task(send())
        digest = hashlib.sha256()
        while chunk := await reader.read(1 << 18):
            digest.update(chunk)
        await sender
        writer.write(digest.hexdigest().encode())
        writer.write_eof()
        await writer.drain()

    return handler


def check_reply(reply: bytes, server_data: bytes, client_data: bytes) -> None:
    """The hash server's reply: its own data, then the SHA-256 of what reached it."""
    assert len(reply) == len(server_data) + 64
    assert hashlib.sha256(reply[:-64]).digest() == hashlib.sha256(server_data).digest()
    assert reply[-64:].decode() == hashlib.sha256(client_data).hexdigest()
