"""A version 2 path in miniature, on real loopback sockets: client → front → session(s) → back →
target. The front accepts raw TCP and opens one stream per client on the least-loaded session;
the back dials the target for every stream the front opens. Every session, socket and task is
closed by :meth:`MuxChain.aclose`, so a leak fails the test with a ResourceWarning."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from portway.net.mux import MuxConnection
from portway.net.mux_socket import SocketStream
from portway.net.mux_stream import MuxStream
from portway.wire.codes import Reason
from portway.wire.mux import MuxSession

from .harness import Harness, Tls, wait_until


@dataclass
class MuxChain:
    port: int  # where clients connect
    back_port: int = 0  # where the front's sessions connect
    front: list[MuxConnection] = field(default_factory=list)  # the dialling (agent) ends
    back: list[MuxConnection] = field(default_factory=list)  # the accepting (hub) ends
    sockets: list[SocketStream] = field(default_factory=list)  # every bridged socket, both ends
    closed: list[BaseException | None] = field(default_factory=list)

    def least_loaded(self) -> MuxConnection:
        live = [c for c in self.front if c.transport is not None and not c.session.going_away]
        return min(live, key=lambda c: c.session.stream_count)


async def mux_chain(
    harness: Harness,
    target_port: int,
    *,
    tls: Tls | None = None,
    sessions: int = 1,
) -> MuxChain:
    loop = asyncio.get_running_loop()
    chain = MuxChain(port=0)

    def on_back_open(stream: MuxStream, first: memoryview) -> int:
        bridge = SocketStream(stream)
        chain.sockets.append(bridge)

        async def dial() -> None:
            try:
                await loop.create_connection(lambda: bridge, "127.0.0.1", target_port)
            except OSError:
                stream.reset(Reason.TARGET_REFUSED)

        harness.spawn(dial())
        return 0  # every byte is the client's

    def back_factory() -> MuxConnection:
        connection = MuxConnection(
            MuxSession(client=False), on_back_open, chain.closed.append, name="back"
        )
        chain.back.append(connection)
        return connection

    server = await loop.create_server(back_factory, "127.0.0.1", 0, ssl=tls.server if tls else None)
    harness.servers.append(server)
    back_port = chain.back_port = server.sockets[0].getsockname()[1]

    def refuse(stream: MuxStream, first: memoryview) -> int:
        stream.reset(Reason.DENIED)  # the back never opens streams toward the front
        return 0

    for _ in range(sessions):
        _, connection = await loop.create_connection(
            lambda: MuxConnection(MuxSession(client=True), refuse, name="front"),
            "127.0.0.1",
            back_port,
            ssl=tls.client if tls else None,
            server_hostname="localhost" if tls else None,
        )
        chain.front.append(connection)

    def front_factory() -> SocketStream:
        bridge = SocketStream(chain.least_loaded().open_stream())
        chain.sockets.append(bridge)
        return bridge

    entry = await loop.create_server(front_factory, "127.0.0.1", 0)
    harness.servers.append(entry)
    chain.port = entry.sockets[0].getsockname()[1]
    return chain


async def close_chain(chain: MuxChain) -> None:
    """Close every session and bridged socket, and wait until their transports are gone."""
    for bridge in chain.sockets:
        if bridge.transport is not None:
            bridge.transport.abort()
    for connection in (*chain.front, *chain.back):
        if connection.transport is not None:
            connection.transport.abort()
    everything: list[SocketStream | MuxConnection] = [*chain.sockets, *chain.front, *chain.back]
    await wait_until(
        lambda: all(item.transport is None for item in everything), "every transport is closed"
    )
