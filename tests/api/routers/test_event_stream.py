"""`GET /v1/events/stream` through a running hub: SSE frames, resume, keep-alive, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from portway.api.routers import events as events_router
from portway.hub.core.config import load_hub_config
from portway.hub.server import SHUTDOWN_GRACE_SECONDS, Hub
from portway.testing.hub import hub_flags

WAIT = 10.0


class SseReader:
    """Reads Server-Sent Events messages (and comments) from a streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        self._lines = response.aiter_lines()
        self.comments: list[str] = []

    async def _next(self, *, comment: bool) -> dict[str, str]:
        fields: dict[str, str] = {}
        async with asyncio.timeout(WAIT):
            async for line in self._lines:
                if not line:
                    if "data" in fields:
                        return fields
                    fields = {}
                elif line.startswith(":"):
                    self.comments.append(line)
                    if comment:
                        return {"comment": line}
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        raise EOFError("the stream ended")

    async def message(self) -> dict[str, Any]:
        """The next event: the decoded `data`, with the SSE `id` and `event` as `sse`."""
        fields = await self._next(comment=False)
        return {**json.loads(fields["data"]), "sse": (int(fields["id"]), fields["event"])}

    async def comment(self) -> str:
        return (await self._next(comment=True))["comment"]


@contextlib.asynccontextmanager
async def started(tmp_path: Path, database_url: str) -> AsyncIterator[Hub]:
    hub = Hub(load_hub_config(hub_flags(tmp_path / "hub", database_url=database_url), {}))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


def client_for(hub: Hub, key: str | None = None) -> httpx.AsyncClient:
    key = key or hub.config.admin_key_file.read_text().strip()
    return httpx.AsyncClient(
        base_url=hub.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=WAIT
    )


async def tunnel(client: httpx.AsyncClient, agent: str, name: str) -> str:
    body = {"target": "localhost:5432", "agentId": agent, "name": name}
    response = await client.post("/v1/tunnels", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_resume_with_last_event_id_gives_exactly_the_missed_events(
    tmp_path: Path, database_url: str
) -> None:
    async with started(tmp_path, database_url) as hub, client_for(hub) as api:
        created = await api.post("/v1/workspaces", json={"name": "elsewhere"})
        other = client_for(hub, created.json()["apiKey"])
        agent = (await api.post("/v1/agents", json={})).json()["id"]
        async with api.stream("GET", "/v1/events/stream") as response:
            live = SseReader(response)
            assert (await live.comment()).startswith(": connected")
            first = await tunnel(api, agent, "first")
            seen = await live.message()
            assert seen["sse"] == (seen["seq"], "tunnel.created") and seen["objectId"] == first
            assert seen["type"] == "tunnel.created" and seen["data"]["tunnel"]["name"] == "first"

        # Disconnected: these happen while nobody listens.
        second = await tunnel(api, agent, "second")
        await api.patch(f"/v1/tunnels/{second}", json={"status": "paused"})
        await tunnel(other, (await other.post("/v1/agents", json={})).json()["id"], "theirs")
        await api.delete(f"/v1/tunnels/{first}")
        missed = (await api.get("/v1/events", params={"after": seen["seq"]})).json()["items"]
        assert [e["type"] for e in missed] == [
            "tunnel.created", "tunnel.status_changed", "tunnel.deleted",
        ]  # fmt: skip

        headers = {"Last-Event-ID": str(seen["seq"])}
        async with api.stream("GET", "/v1/events/stream", headers=headers) as response:
            resumed = SseReader(response)
            got = [await resumed.message() for _ in missed]
            assert [m["sse"] for m in got] == [(e["seq"], e["type"]) for e in missed]
            assert [{k: m[k] for k in missed[0]} for m in got] == missed
            third = await tunnel(api, agent, "third")
            after = await resumed.message()  # nothing else was in between
            assert (after["type"], after["objectId"]) == ("tunnel.created", third)

        params = {"lastEventId": seen["seq"], "type": "tunnel.created"}
        async with api.stream("GET", "/v1/events/stream", params=params) as response:
            only_created = SseReader(response)
            assert [(await only_created.message())["objectId"] for _ in range(2)] == [
                second,
                third,
            ]
        await other.aclose()


async def test_keep_alive_comments(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_router, "KEEPALIVE_SECONDS", 0.2)
    async with (
        started(tmp_path, database_url) as hub,
        client_for(hub) as api,
        api.stream("GET", "/v1/events/stream") as response,
    ):
        reader = SseReader(response)
        assert response.headers["cache-control"] == "no-cache"
        assert (await reader.comment()).startswith(": connected")
        assert await reader.comment() == ": keep-alive"


async def test_the_stream_ends_cleanly_when_the_hub_stops(
    tmp_path: Path, database_url: str
) -> None:
    hub = Hub(load_hub_config(hub_flags(tmp_path / "hub", database_url=database_url), {}))
    await hub.start()
    try:
        async with client_for(hub) as api, api.stream("GET", "/v1/events/stream") as response:
            reader = SseReader(response)
            await reader.comment()

            async def until_the_end() -> None:
                with contextlib.suppress(EOFError):
                    while True:
                        await reader.message()

            consumer = asyncio.create_task(until_the_end())
            began = time.monotonic()
            await hub.stop()
            assert time.monotonic() - began < SHUTDOWN_GRACE_SECONDS
            async with asyncio.timeout(WAIT):
                await consumer  # ended by the server, without an error
    finally:
        await hub.stop()
