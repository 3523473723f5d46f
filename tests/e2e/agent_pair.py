"""An in-process hub with two agents, one exposing and one reaching, each with its own key (so
reach between them is end to end, protocol.md §19), a tap on what the hub relays, and an echo
target that counts its connections. The fixtures `pair` and `echo` (conftest.py) use them."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from portway.agent.runtime import AgentRefused, AgentRuntime
from portway.agent.settings import AgentSettings
from portway.hub.server import Hub
from portway.net import identity
from portway.net.mux_bridge import BridgeEnd
from portway.testing.hub import running_hub

from .in_process import WAIT, until

SECRET = b"portway-plaintext-marker:"  # what must never cross the hub in the clear


class Echo:
    """A target that echoes, and remembers what reached it (the agent's protocol probes too)."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.accepted = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while chunk := await reader.read(1 << 16):
                self.received += chunk
                writer.write(chunk)
                await writer.drain()
            writer.write_eof()
        except ConnectionError:
            pass
        finally:
            writer.close()


@dataclass
class AgentPair:
    hub: Hub
    api: httpx.AsyncClient
    exposing: AgentRuntime
    reaching: AgentRuntime
    ids: dict[str, uuid.UUID]
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """(agent name, event, details) as each runtime's `on_state` told them."""

    async def expose(self, port: int, name: str, **extra: Any) -> str:
        """A tunnel of the exposing agent to 127.0.0.1:`port`, once active and its target
        probed (the probes are connections to the target too); its id."""
        body = {"target": f"127.0.0.1:{port}", "name": name, "agentId": str(self.ids["exposing"])}
        created = await self.api.post("/v1/tunnels", json=body | extra)
        assert created.status_code == 201, created.text
        tunnel = str(created.json()["id"])
        async with asyncio.timeout(WAIT):
            while (await self.api.get(f"/v1/tunnels/{tunnel}")).json()["status"] != "active":
                await asyncio.sleep(0.02)
        await until(lambda: tunnel in self.exposing.e2e.certificates, "its certificate")
        await until(
            lambda: (
                ("exposing", "detected", name)
                in {(w, e, i.get("tunnel")) for w, e, i in self.events}
            ),
            "the exposing agent to probe the target",
        )
        return tunnel

    async def reach(self, tunnel: str, name: str) -> int:
        """A local listener of the reaching agent for `tunnel`; its port."""
        return await self.reaching.add_reach(tunnel, name, 0, ("127.0.0.1",))


def tap_relayed(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Everything the hub's stream bridges relay from now on, chunk by chunk (a reach stream's
    bytes, after the `assign_ok` each agent answered)."""
    seen: list[bytes] = []
    relay = BridgeEnd.stream_data

    def tapped(end: BridgeEnd, data: memoryview) -> None:
        seen.append(bytes(data))
        relay(end, data)

    monkeypatch.setattr(BridgeEnd, "stream_data", tapped)
    return seen


@contextlib.asynccontextmanager
async def start_pair(tmp_path: Path) -> AsyncIterator[AgentPair]:
    async with running_hub(tmp_path / "hub") as hub:
        admin = hub.config.admin_key_file.read_text().strip()
        async with httpx.AsyncClient(
            base_url=hub.api_url, headers={"Authorization": f"Bearer {admin}"}, timeout=WAIT
        ) as api:
            endpoint = (await api.get("/v1/hub")).json()["agentEndpoint"]
            runtimes: dict[str, AgentRuntime] = {}
            ids: dict[str, uuid.UUID] = {}
            events: list[tuple[str, str, dict[str, Any]]] = []
            for name in ("exposing", "reaching"):
                created = (await api.post("/v1/agents", json={"name": name})).json()
                ids[name] = uuid.UUID(created["id"])
                settings = AgentSettings(
                    host="127.0.0.1", port=int(endpoint["port"]), token=created["token"],
                    ca_certificate=endpoint["caCertificate"],
                    ca_fingerprint=endpoint["caFingerprint"], serve=name == "exposing",
                    identity_key=identity.new_key(),
                )  # fmt: skip

                def told(event: str, info: dict[str, Any], who: str = name) -> None:
                    events.append((who, event, info))

                runtimes[name] = AgentRuntime(settings, on_state=told)
            pair = AgentPair(hub, api, runtimes["exposing"], runtimes["reaching"], ids, events)
            tasks = [asyncio.create_task(r.run()) for r in runtimes.values()]
            try:
                for runtime in runtimes.values():
                    await until(partial(getattr, runtime, "identity"), "each agent's certificate")
                yield pair
            finally:
                for runtime in runtimes.values():
                    await runtime.stop()
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, AgentRefused):
                        await task  # AgentRefused: a test revoked the agent


async def round_trip(port: int, payload: bytes) -> bytes:
    """Send `payload` and FIN to 127.0.0.1:`port`; everything it answers until its FIN."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(WAIT):

            async def send() -> None:
                writer.write(payload)
                await writer.drain()
                writer.write_eof()

            sending = asyncio.create_task(send())
            answer = await reader.read()
            await sending
    finally:
        writer.close()
    return answer
