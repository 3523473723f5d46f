"""Real loopback building blocks for splice tests: targets, relays and clients, all tracked so
that a test ends with every transport closed (a leak would fail it with a ResourceWarning)."""

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

from portway.net.splice import Splice
from portway.wire.codes import Reason

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


class Harness:
    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
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

    async def relay(
        self,
        *,
        accept_framed: bool,
        dial_framed: bool,
        dial_port: int,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        gate: asyncio.Event | None = None,
        limit: int = 256 * 1024,
    ) -> Relay:
        """Listen; splice each accepted connection (leg ``a``) to a new dial (leg ``b``).

        With ``gate``, the dial waits for the event: the accepted side is "pending" meanwhile.
        """
        loop = asyncio.get_running_loop()
        relay = Relay(port=0, splices=[])

        def factory() -> asyncio.Protocol:
            splice = Splice(a_framed=accept_framed, b_framed=dial_framed, limit=limit)
            self.splices.append(splice)
            relay.splices.append(splice)

            async def dial() -> None:
                if gate is not None:
                    await gate.wait()
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

        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ssl)
        self.servers.append(server)
        relay.port = server.sockets[0].getsockname()[1]
        return relay

    async def chain(
        self,
        target_port: int,
        *,
        tls: Tls | None = None,
        gate: asyncio.Event | None = None,
        limit: int = 256 * 1024,
    ) -> Chain:
        """client → entry (raw↔framed) → hub (framed↔framed) → exposer (framed↔raw) → target.

        The reach path: reaching agent, hub, exposing agent. With ``tls`` both framed hops run
        over TLS with the hub's generated CA.
        """
        server_ssl = tls.server if tls else None
        client_ssl = tls.client if tls else None
        exposer = await self.relay(
            accept_framed=True,
            dial_framed=False,
            dial_port=target_port,
            server_ssl=server_ssl,
            limit=limit,
        )
        hub = await self.relay(
            accept_framed=True,
            dial_framed=True,
            dial_port=exposer.port,
            server_ssl=server_ssl,
            client_ssl=client_ssl,
            limit=limit,
        )
        entry = await self.relay(
            accept_framed=False,
            dial_framed=True,
            dial_port=hub.port,
            client_ssl=client_ssl,
            gate=gate,
            limit=limit,
        )
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
