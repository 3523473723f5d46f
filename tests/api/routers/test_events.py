"""`GET /v1/events`: newest first, oldest first after a seq, filtered by type, per workspace."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.helpers import assert_error, error_fields
from tests.api.tunnel_helpers import new_agent, new_tunnel


async def every(api: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """Every page of a listing, following `nextCursor` two items at a time."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": 2, **params} | ({"cursor": cursor} if cursor else {})
        response = await api.get("/v1/events", params=query)
        assert response.status_code == 200, response.text
        items += response.json()["items"]
        cursor = response.json()["nextCursor"]
        if cursor is None:
            return items


async def test_events_newest_first_and_oldest_first_after(api: httpx.AsyncClient) -> None:
    agent = await new_agent(api)
    tunnels = [await new_tunnel(api, agent, name=f"t{i}") for i in range(3)]
    await api.patch(f"/v1/tunnels/{tunnels[0]['id']}", json={"name": "renamed"})
    await api.delete(f"/v1/tunnels/{tunnels[1]['id']}")

    newest = await every(api)
    assert [e["type"] for e in newest] == [
        "tunnel.deleted", "tunnel.updated", "tunnel.created", "tunnel.created", "tunnel.created",
    ]  # fmt: skip
    seqs = [e["seq"] for e in newest]
    assert seqs == sorted(seqs, reverse=True)
    first = newest[-1]
    assert first["objectId"] == tunnels[0]["id"]
    assert first["data"]["tunnel"]["name"] == "t0"
    assert set(first) == {"seq", "id", "type", "objectId", "createdAt", "data"}

    oldest = await every(api, after=0)
    assert oldest == newest[::-1]
    assert await every(api, after=seqs[2]) == newest[:2][::-1]
    assert await every(api, after=seqs[0]) == []


async def test_type_filter(api: httpx.AsyncClient) -> None:
    agent = await new_agent(api)
    tunnel = await new_tunnel(api, agent)
    await api.delete(f"/v1/tunnels/{tunnel['id']}")
    deleted = await every(api, type="tunnel.deleted")
    assert [e["type"] for e in deleted] == ["tunnel.deleted"]
    both = (
        await api.get("/v1/events", params=[("type", "tunnel.deleted"), ("type", "tunnel.created")])
    ).json()["items"]
    assert [e["type"] for e in both] == ["tunnel.deleted", "tunnel.created"]
    unknown = await api.get("/v1/events", params={"type": "tunnel.exploded"})
    assert_error(unknown, 422)
    assert error_fields(unknown) == {"type.0"}


async def test_bad_paging_parameters(api: httpx.AsyncClient) -> None:
    for params, field in (
        ({"cursor": "nonsense"}, "cursor"),
        ({"after": -1}, "after"),
        ({"after": 2**63}, "after"),
        ({"limit": 201}, "limit"),
        ({"limit": 0}, "limit"),
    ):
        response = await api.get("/v1/events", params=params)
        assert_error(response, 422)
        assert error_fields(response) == {field}
    assert (await api.get("/v1/events", params={"limit": 200})).status_code == 200


async def test_events_are_workspace_scoped(
    api: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    await new_tunnel(api, await new_agent(api))
    assert (await other.get("/v1/events")).json()["items"] == []
    mine = await new_tunnel(other, await new_agent(other))
    [event] = (await other.get("/v1/events")).json()["items"]
    assert event["objectId"] == mine["id"]
    assert mine["id"] not in {e["objectId"] for e in await every(api)}


async def test_stream_rejects_a_bad_last_event_id(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/events/stream", headers={"Last-Event-ID": "abc"})
    assert_error(response, 422)
    assert error_fields(response) == {"Last-Event-ID"}
    response = await api.get("/v1/events/stream", params={"lastEventId": "-3"})
    assert error_fields(response) == {"lastEventId"}
    assert_error(await api.get("/v1/events/stream", headers={"Authorization": ""}), 401)
