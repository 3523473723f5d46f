"""The hub's public UDP port in-process: sessions per visitor, pause, counters, closing."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from portway.domain.clock import FrozenClock
from portway.hub.dataplane.channels import TunnelUnavailable
from portway.hub.dataplane.routes import Route, RouteTable, Snapshot
from portway.hub.dataplane.traffic import Traffic
from portway.hub.dataplane.udp import UdpContext, UdpPort
from portway.wire.codes import Reason

DEADLINE = 10.0


class FakePlane:
    """Stands in for `DataPlane`: its "agent" echoes every framed record back unchanged."""

    def __init__(self, route: Route) -> None:
        self.table = RouteTable()
        self.route = route
        self.traffic = Traffic()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.far: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.fail: Reason | None = None

    @property
    def route(self) -> Route:
        return next(iter(self.table.snapshot.routes.values()))

    @route.setter
    def route(self, route: Route) -> None:
        self.table.snapshot = Snapshot(routes={route.id: route}, binds={}, agent_workspaces={})

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def open_channel(
        self, tunnel_id: uuid.UUID, conn_id: str, *, tls: bool = False
    ) -> tuple[asyncio.Transport, bytes, Route]:
        if self.fail is not None:
            raise TunnelUnavailable(self.fail, "no agent")
        near, far = socket.socketpair()
        transport, _ = await asyncio.get_running_loop().create_connection(
            asyncio.Protocol, sock=near
        )
        reader, writer = await asyncio.open_connection(sock=far)
        self.far.append((reader, writer))
        self.spawn(self._echo(reader, writer))
        return transport, b"", self.route

    @staticmethod
    async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if data.startswith(b"\xff\xff"):  # CLOSE: the session is over
                    break
                writer.write(data)
        except ConnectionError:
            pass
        writer.close()

    def context(self) -> UdpContext:
        clock = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
        return UdpContext(self, self.table, self.traffic, clock, self.spawn)


@pytest.fixture
async def plane() -> AsyncIterator[FakePlane]:
    route = Route(
        id=uuid.uuid4(), workspace_id=uuid.uuid4(), agent_id=uuid.uuid4(), name="dns",
        protocol="udp", host="127.0.0.1", port=53, public=True, hub_port=0, paused=False,
    )  # fmt: skip
    fake = FakePlane(route)
    yield fake
    for _reader, writer in fake.far:
        writer.close()
    for task in list(fake.tasks):
        task.cancel()
    await asyncio.gather(*fake.tasks, return_exceptions=True)


async def recv(sock: socket.socket, wait: float = DEADLINE) -> bytes:
    async with asyncio.timeout(wait):
        return await asyncio.get_running_loop().sock_recv(sock, 70000)


def visitor() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def opened_port(plane: FakePlane) -> tuple[UdpPort, int]:
    assert plane.route is not None
    bound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bound.bind(("127.0.0.1", 0))
    number = bound.getsockname()[1]
    bound.close()
    port = UdpPort(plane.route.id, "127.0.0.1", number, plane.context())
    await port.open()
    return port, number


async def test_visitors_get_their_own_sessions_and_counters(plane: FakePlane) -> None:
    port, number = await opened_port(plane)
    assert plane.route is not None
    tunnel = plane.route.id
    a, b = visitor(), visitor()
    try:
        for n in range(3):
            a.sendto(f"a{n}".encode(), ("127.0.0.1", number))
            b.sendto(f"b{n}".encode(), ("127.0.0.1", number))
        assert [await recv(a) for _ in range(3)] == [b"a0", b"a1", b"a2"]
        assert [await recv(b) for _ in range(3)] == [b"b0", b"b1", b"b2"]
        assert port.sessions == 2 and plane.traffic.active(tunnel) == 2
        delta = plane.traffic.drain()[tunnel]
        assert (delta.opened, delta.datagrams_in, delta.datagrams_out) == (2, 6, 6)

        # Paused: live sessions end, new datagrams are dropped and counted.
        plane.route = replace(plane.route, paused=True)
        assert plane.traffic.reset(tunnel, Reason.PAUSED) == 2
        assert port.sessions == 0
        a.sendto(b"while paused", ("127.0.0.1", number))
        async with asyncio.timeout(DEADLINE):
            while plane.traffic.pending[tunnel].datagrams_dropped == 0:
                await asyncio.sleep(0.01)
        delta = plane.traffic.drain()[tunnel]
        assert (delta.closed, delta.datagrams_dropped) == (2, 1)

        # No agent: the session ends with the reason; held datagrams count as dropped.
        plane.route = replace(plane.route, paused=False)
        plane.fail = Reason.UNAVAILABLE
        a.sendto(b"nobody", ("127.0.0.1", number))
        async with asyncio.timeout(DEADLINE):
            while plane.traffic.pending.get(tunnel) is None:
                await asyncio.sleep(0.01)
            while port.sessions:
                await asyncio.sleep(0.01)
        assert plane.traffic.drain()[tunnel].datagrams_dropped == 1
    finally:
        a.close()
        b.close()
        await port.close()
    # Closing frees the port at once.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", number))


async def test_idle_sessions_expire_per_tunnel_setting(plane: FakePlane) -> None:
    assert plane.route is not None
    plane.route = replace(plane.route, udp_idle_timeout=0.1)
    port, number = await opened_port(plane)
    sock = visitor()
    try:
        sock.sendto(b"hi", ("127.0.0.1", number))
        assert await recv(sock) == b"hi"
        assert port.sessions == 1
        async with asyncio.timeout(DEADLINE):
            while port.sessions:
                await asyncio.sleep(0.01)
        sock.sendto(b"again", ("127.0.0.1", number))
        assert await recv(sock) == b"again"
        assert len(plane.far) == 2  # a new session, hence a new channel
    finally:
        sock.close()
        await port.close()
