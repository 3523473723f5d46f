"""Workspace isolation: a key from workspace B sees none of A's tunnels, shares or connections,
cannot create a tunnel on A's agent and cannot connect A's agent to anything."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from portway.api.context import ApiContext
from tests.api.helpers import assert_error
from tests.api.tunnel_helpers import events, new_agent, new_share, new_tunnel


@pytest.fixture
async def owned(api: httpx.AsyncClient) -> dict[str, Any]:
    """Workspace A's agent, tunnel, connection and share."""
    agent = await new_agent(api, "a-agent")
    tunnel = await new_tunnel(api, agent, name="a-db", target="localhost:8080")
    connection = await api.post(f"/v1/tunnels/{tunnel['id']}/connect", json={"agentId": agent})
    assert connection.status_code == 201
    share = await new_share(api, tunnel["id"])
    return {"agent": agent, "tunnel": tunnel, "connection": connection.json(), "share": share}


async def test_b_gets_404_for_a_tunnels(
    api: httpx.AsyncClient, other: httpx.AsyncClient, owned: dict[str, Any]
) -> None:
    tunnel = owned["tunnel"]
    b_agent = await new_agent(other, "b-agent")
    for ref in (tunnel["id"], tunnel["name"]):
        missing = await other.get("/v1/tunnels/00000000-0000-4000-8000-000000000000")
        got = await other.get(f"/v1/tunnels/{ref}")
        assert_error(got, 404, "tunnel_not_found")
        # Exactly the body a missing tunnel gives: nothing tells B that A's exists.
        assert got.json() == missing.json()
        assert_error(await other.patch(f"/v1/tunnels/{ref}", json={"status": "paused"}), 404)
        assert_error(await other.delete(f"/v1/tunnels/{ref}"), 404, "tunnel_not_found")
        connect = await other.post(f"/v1/tunnels/{ref}/connect", json={"agentId": b_agent})
        assert_error(connect, 404, "tunnel_not_found")
        assert_error(await other.get(f"/v1/tunnels/{ref}/connections"), 404, "tunnel_not_found")
        share = await other.post(f"/v1/tunnels/{ref}/shares", json={"name": "steal"})
        assert_error(share, 404, "tunnel_not_found")
        assert_error(await other.get(f"/v1/tunnels/{ref}/shares"), 404, "tunnel_not_found")
    assert (await other.get("/v1/tunnels")).json()["items"] == []
    assert (await other.get("/v1/tunnels", params={"name": tunnel["name"]})).json()["items"] == []
    assert (await other.get("/v1/tunnels", params={"agentId": owned["agent"]})).json()[
        "items"
    ] == []
    # A's tunnel is untouched.
    assert (await api.get(f"/v1/tunnels/{tunnel['id']}")).json() == tunnel


async def test_b_gets_404_for_a_connections(
    api: httpx.AsyncClient, other: httpx.AsyncClient, owned: dict[str, Any]
) -> None:
    tunnel, connection = owned["tunnel"], owned["connection"]
    b_tunnel = await new_tunnel(other, await new_agent(other))
    through_a = f"/v1/tunnels/{tunnel['id']}/connections/{connection['id']}"
    assert_error(await other.delete(through_a), 404, "tunnel_not_found")
    through_b = f"/v1/tunnels/{b_tunnel['id']}/connections/{connection['id']}"
    assert_error(await other.delete(through_b), 404, "connection_not_found")
    listed = (await api.get(f"/v1/tunnels/{tunnel['id']}/connections")).json()["items"]
    assert [c["id"] for c in listed] == [connection["id"]]


async def test_b_gets_404_for_a_shares(
    api: httpx.AsyncClient, other: httpx.AsyncClient, owned: dict[str, Any]
) -> None:
    share = owned["share"]
    missing = await other.get("/v1/shares/00000000-0000-4000-8000-000000000000")
    got = await other.get(f"/v1/shares/{share['id']}")
    assert_error(got, 404, "share_not_found")
    assert got.json() == missing.json()
    assert_error(await other.delete(f"/v1/shares/{share['id']}"), 404, "share_not_found")
    assert_error(await other.get(f"/v1/shares/{share['id']}/access-logs"), 404, "share_not_found")
    assert (await other.get("/v1/shares")).json()["items"] == []
    by_tunnel = await other.get("/v1/shares", params={"tunnelId": owned["tunnel"]["id"]})
    assert by_tunnel.json()["items"] == []
    assert (await api.get(f"/v1/shares/{share['id']}")).json()["status"] == "active"


async def test_b_cannot_use_a_agent(
    api: httpx.AsyncClient, other: httpx.AsyncClient, owned: dict[str, Any], ctx: ApiContext
) -> None:
    a_agent = owned["agent"]
    created = await other.post("/v1/tunnels", json={"target": "localhost:22", "agentId": a_agent})
    error = assert_error(created, 404, "agent_not_found")
    assert error["details"][0]["field"] == "agentId"
    b_tunnel = await new_tunnel(other, await new_agent(other))
    connect = await other.post(f"/v1/tunnels/{b_tunnel['id']}/connect", json={"agentId": a_agent})
    assert_error(connect, 404, "agent_not_found")
    # Nor can A connect B's agent, or point a tunnel at it.
    b_agent = b_tunnel["agentId"]
    a_connect = await api.post(
        f"/v1/tunnels/{owned['tunnel']['id']}/connect", json={"agentId": b_agent}
    )
    assert_error(a_connect, 404, "agent_not_found")
    a_create = await api.post("/v1/tunnels", json={"target": "h:1", "agentId": b_agent})
    assert_error(a_create, 404, "agent_not_found")
    # Only the setup's and B's own tunnel left events; the refusals left none.
    assert len(await events(ctx, "tunnel.created")) == 2
    assert len(await events(ctx, "connection.created")) == 1


async def test_events_belong_to_their_workspace(
    api: httpx.AsyncClient, other: httpx.AsyncClient, owned: dict[str, Any], ctx: ApiContext
) -> None:
    b_tunnel = await new_tunnel(other, await new_agent(other))
    a_workspace = (await api.get("/v1/hub")).json()["workspace"]["id"]
    b_workspace = (await other.get("/v1/hub")).json()["workspace"]["id"]
    by_object = {e.object_id: str(e.workspace_id) for e in await events(ctx)}
    assert by_object[owned["tunnel"]["id"]] == a_workspace
    assert by_object[owned["share"]["id"]] == a_workspace
    assert by_object[b_tunnel["id"]] == b_workspace
