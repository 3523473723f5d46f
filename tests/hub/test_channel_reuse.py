"""Data channels return to the pool after a cleanly finished connection (features `reuse` and
`reuse_reach`): an in-process hub and agent runtime, a real echo origin, connections through a
public port and through a reach bind."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from portway.agent.runtime import AgentRuntime, AgentSettings
from portway.hub.dataplane.sessions import MAX_IDLE, AgentSession
from portway.hub.server import Hub
from portway.net.framed import FramedConnection
from portway.testing.hub import running_hub
from portway.testing.origins import EchoOrigin
from portway.testing.ports import free_port
from portway.testing.waiting import async_wait_until
from portway.wire.messages import Assign, ChannelHello, Message, TunnelSpec


async def echo(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        writer.write_eof()
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


async def active(api_url: str, headers: dict[str, str], tunnel_id: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, headers=headers) as api:

        async def is_active() -> bool:
            return bool((await api.get(f"/v1/tunnels/{tunnel_id}")).json()["status"] == "active")

        await async_wait_until(is_active, timeout=20, what=f"tunnel {tunnel_id} to become active")


@dataclass
class Exposed:
    hub: Hub
    agent_id: str
    hub_port: int
    tunnel_id: str
    headers: dict[str, str]
    opened: list[bool]  # one entry per connection the agent opened: True for a data channel
    runtime: AgentRuntime


@contextlib.asynccontextmanager
async def exposed_echo(tmp_path: Path, tls: str) -> AsyncIterator[Exposed]:
    """An in-process hub and an agent runtime exposing an echo origin on a public port; the
    agent's connections to the hub are counted."""
    async with running_hub(tmp_path / "hub", agent_tls=tls) as hub:
        assert hub.bootstrap is not None and hub.bootstrap.admin_key is not None
        endpoint = hub.dataplane.endpoint if hub.dataplane else None
        assert endpoint is not None
        headers = {"Authorization": f"Bearer {hub.bootstrap.admin_key}"}
        with EchoOrigin() as origin:
            async with httpx.AsyncClient(base_url=hub.api_url, headers=headers) as api:
                agent = (await api.post("/v1/agents", json={"name": "exposer"})).json()
                created = await api.post(
                    "/v1/tunnels",
                    json={"target": f"127.0.0.1:{origin.port}", "agentId": agent["id"],
                          "public": True, "protocol": "tcp"},
                )  # fmt: skip
                assert created.status_code == 201, created.text
                hub_port, tunnel_id = created.json()["hubPort"], created.json()["id"]
            settings = AgentSettings(
                host=endpoint.host, port=endpoint.port, token=agent["token"],
                tls=endpoint.tls, ca_certificate=endpoint.ca_certificate,
                ca_fingerprint=endpoint.ca_fingerprint,
            )  # fmt: skip
            runtime = AgentRuntime(settings)
            opened: list[bool] = []
            connect = runtime._connect

            async def counting(hello: Message) -> FramedConnection:
                opened.append(isinstance(hello, ChannelHello))
                return await connect(hello)

            runtime._connect = counting  # type: ignore[method-assign]
            task = asyncio.create_task(runtime.run())
            try:
                await asyncio.wait_for(runtime.connected.wait(), 20)
                await active(hub.api_url, headers, tunnel_id)
                assert await asyncio.wait_for(echo(hub_port, b"warm-up"), 20) == b"warm-up"
                yield Exposed(hub, agent["id"], hub_port, tunnel_id, headers, opened, runtime)
            finally:
                await runtime.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


@pytest.mark.parametrize("tls", ["on", "off"])
async def test_sequential_connections_reuse_the_same_channels(tmp_path: Path, tls: str) -> None:
    async with exposed_echo(tmp_path, tls) as exposed:
        before = sum(exposed.opened)
        for i in range(30):
            payload = f"connection {i}".encode() * 100
            assert await asyncio.wait_for(echo(exposed.hub_port, payload), 20) == payload
        # Without reuse every connection would cost the agent a new channel.
        assert sum(exposed.opened) - before <= 4, sum(exposed.opened) - before


@pytest.mark.parametrize("tls", ["on", "off"])
async def test_sequential_reach_connections_reuse_both_channels(tmp_path: Path, tls: str) -> None:
    async with exposed_echo(tmp_path, tls) as exposed:
        # The same agent holds a reach bind to its own tunnel: each connection takes one of its
        # channels for the reaching end and one for the exposing end, the hub between them.
        local = free_port()
        async with httpx.AsyncClient(base_url=exposed.hub.api_url, headers=exposed.headers) as api:
            bound = await api.post(
                f"/v1/tunnels/{exposed.tunnel_id}/connect",
                json={"agentId": exposed.agent_id, "localPort": local},
            )
            assert bound.status_code == 201, bound.text

        async def listening() -> bool:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", local)
            except OSError:
                return False
            writer.close()
            await writer.wait_closed()
            return True

        await async_wait_until(listening, timeout=20, what="the reach bind to listen")
        assert await asyncio.wait_for(echo(local, b"warm-up"), 20) == b"warm-up"
        before = sum(exposed.opened)
        for i in range(30):
            payload = f"reach {i}".encode() * 100
            assert await asyncio.wait_for(echo(local, payload), 20) == payload
        # Without reuse every connection would cost the agent two new channels.
        assert sum(exposed.opened) - before <= 4, sum(exposed.opened) - before
        # A connection that ends in a reset still works, and so does the next clean one.
        _, writer = await asyncio.open_connection("127.0.0.1", local)
        writer.write(b"cut")
        writer.transport.abort()
        assert await asyncio.wait_for(echo(local, b"after"), 20) == b"after"


async def test_a_burst_leaves_no_more_than_max_idle_channels(tmp_path: Path) -> None:
    async with exposed_echo(tmp_path, "on") as exposed:
        # Opened together: visitors wait for channels, and each waiter asks the agent for more.
        held = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", exposed.hub_port) for _ in range(300))
        )
        for _, writer in held:
            writer.write(b"x")
        for reader, _ in held:
            assert await asyncio.wait_for(reader.readexactly(1), 20) == b"x"
        for _, writer in held:
            writer.close()
            await writer.wait_closed()
        assert exposed.hub.dataplane is not None
        sessions = exposed.hub.dataplane._sessions.serving(uuid.UUID(exposed.agent_id))

        async def settled() -> bool:
            return all(s.idle_channels <= MAX_IDLE for s in sessions) and bool(sessions)

        # Channels the burst asked for keep arriving after it; the pool keeps at most MAX_IDLE.
        await async_wait_until(settled, timeout=20, what="the idle pool to settle")
        assert await asyncio.wait_for(echo(exposed.hub_port, b"after"), 20) == b"after"
        assert all(s.idle_channels <= MAX_IDLE for s in sessions)


async def test_a_new_tunnel_serves_its_first_visitor(tmp_path: Path) -> None:
    """A CI job creates a tunnel and connects as soon as its hub port accepts. The agent learns
    of the tunnel on its control session and gets the visitor on a data channel, another
    connection: here the control session is held back until the visitor's assignment has
    reached the agent, and the visitor is still served."""
    async with exposed_echo(tmp_path, "on") as exposed:
        assert exposed.hub.dataplane is not None
        desired = exposed.hub.dataplane._desired
        push = desired.push
        held: list[AgentSession] = []
        desired.push = held.append  # type: ignore[method-assign,assignment]
        tunnels = exposed.runtime.tunnels
        find = tunnels.find
        waiting = asyncio.Event()  # an assignment for a tunnel the agent does not know yet

        async def noting(assign: Assign, **kwargs: float) -> TunnelSpec | None:
            if assign.tunnel not in tunnels.specs:
                waiting.set()
            return await find(assign, **kwargs)

        tunnels.find = noting  # type: ignore[method-assign]
        async with httpx.AsyncClient(base_url=exposed.hub.api_url, headers=exposed.headers) as api:
            with EchoOrigin() as origin:
                created = await api.post(
                    "/v1/tunnels",
                    json={"target": f"127.0.0.1:{origin.port}", "agentId": exposed.agent_id,
                          "public": True, "protocol": "tcp", "name": "fresh"},
                )  # fmt: skip
                assert created.status_code == 201, created.text
                port = created.json()["hubPort"]

                async def first_answer() -> bytes | None:
                    try:
                        return await echo(port, b"first")
                    except ConnectionRefusedError:
                        return None  # the hub port is not open yet

                visitor = asyncio.create_task(
                    async_wait_until(first_answer, interval=0.005, what="the port")
                )
                await asyncio.wait_for(waiting.wait(), 20)
                for session in held:  # the control session catches up
                    push(session)
                assert await asyncio.wait_for(visitor, 20) == b"first"
