"""Building blocks for the tunnel, connection and share tests."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx
from sqlalchemy import select

from portway.api.context import ApiContext
from portway.domain.clock import FrozenClock
from portway.hub.core.config import HubConfig
from portway.store.models import Event


async def new_agent(client: httpx.AsyncClient, name: str | None = None) -> str:
    """Enrol an agent in `client`'s workspace; returns its id."""
    response = await client.post("/v1/agents", json={"name": name} if name else {})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def new_tunnel(client: httpx.AsyncClient, agent_id: str, **fields: Any) -> dict[str, Any]:
    """Create a tunnel (default target localhost:5432) and return its representation."""
    body = {"target": "localhost:5432", "agentId": agent_id, **fields}
    response = await client.post("/v1/tunnels", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def post_tunnel(client: httpx.AsyncClient, agent_id: str, **fields: Any) -> httpx.Response:
    """POST /v1/tunnels with a valid body (target localhost:5432) overridden by `fields`."""
    body = {"target": "localhost:5432", "agentId": agent_id, **fields}
    return await client.post("/v1/tunnels", json=body)


def metadata_of_size(size: int, char: str = "x") -> dict[str, Any]:
    """A metadata object whose compact UTF-8 JSON is exactly `size` bytes."""
    overhead = len(b'{"k":""}')
    width = len(char.encode())
    assert (size - overhead) % width == 0
    value = {"k": char * ((size - overhead) // width)}
    assert len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()) == size
    return value


async def new_share(client: httpx.AsyncClient, tunnel_id: str, **fields: Any) -> dict[str, Any]:
    response = await client.post(f"/v1/tunnels/{tunnel_id}/shares", json={"name": "s", **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def events(ctx: ApiContext, type_: str | None = None) -> list[Event]:
    """Rows of the events table, oldest first (optionally of one type)."""
    stmt = select(Event).order_by(Event.seq)
    if type_ is not None:
        stmt = stmt.where(Event.type == type_)
    async with ctx.db.session() as session:
        return list((await session.scalars(stmt)).all())


def context(client: httpx.AsyncClient) -> ApiContext:
    """The ApiContext behind the in-process app `client` talks to."""
    ctx = client._transport.app.state.ctx  # type: ignore[attr-defined]
    assert isinstance(ctx, ApiContext)
    return ctx


def frozen(ctx: ApiContext) -> FrozenClock:
    assert isinstance(ctx.clock, FrozenClock)
    return ctx.clock


def set_port_range(ctx: ApiContext, low: int, high: int) -> None:
    """Narrow the hub's port range for this test (the app reads ctx.config per request)."""
    assert isinstance(ctx.config, HubConfig)
    ctx.config = dataclasses.replace(ctx.config, port_range=(low, high))
