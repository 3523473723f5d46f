"""`GET /v1/tunnels`: filters, newest-first keyset pages, stability under concurrent inserts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from portway.domain.clock import FrozenClock
from tests.api.helpers import assert_error, error_fields
from tests.api.tunnel_helpers import new_agent, new_tunnel


def _names(body: dict[str, Any]) -> list[str]:
    return [t["name"] for t in body["items"]]


async def _all_pages(api: httpx.AsyncClient, **params: Any) -> list[str]:
    names: list[str] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/tunnels", params=query)).json()
        names += _names(page)
        cursor = page["nextCursor"]
        if cursor is None:
            return names


async def test_filters(api: httpx.AsyncClient, clock: FrozenClock) -> None:
    laptop, server = await new_agent(api, "laptop"), await new_agent(api, "server")
    await new_tunnel(api, laptop, name="pg")
    clock.advance(seconds=1)
    await new_tunnel(api, laptop, name="web", target="localhost:8080")
    clock.advance(seconds=1)
    await new_tunnel(api, server, name="dns", target="localhost:53", protocol="udp")
    clock.advance(seconds=1)
    await new_tunnel(api, server, name="api", target="localhost:443")
    await api.patch("/v1/tunnels/web", json={"status": "paused"})

    async def names(**params: str) -> list[str]:
        response = await api.get("/v1/tunnels", params=params)
        assert response.status_code == 200, response.text
        return _names(response.json())

    assert await names() == ["api", "dns", "web", "pg"]
    assert await names(agentId=laptop) == ["web", "pg"]
    assert await names(agentId=server) == ["api", "dns"]
    assert await names(status="paused") == ["web"]
    assert await names(status="connecting") == ["api", "dns", "pg"]
    assert await names(status="active") == []
    assert await names(protocol="udp") == ["dns"]
    assert await names(protocol="https") == ["api"]
    assert await names(protocol="tcp", agentId=laptop) == ["pg"]
    assert await names(name="web") == ["web"]
    assert await names(name="missing") == []
    assert await names(agentId="00000000-0000-4000-8000-000000000000") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "running"}, "status"),
        ({"protocol": "auto"}, "protocol"),
        ({"agentId": "laptop"}, "agentId"),
        ({"name": "bad name"}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
async def test_bad_filters_name_the_parameter(
    api: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await api.get("/v1/tunnels", params=params)
    assert_error(response, 422)
    assert error_fields(response) == {field}


async def test_pages_newest_first_with_limit_edges(
    api: httpx.AsyncClient, clock: FrozenClock
) -> None:
    agent = await new_agent(api)
    for i in range(5):
        await new_tunnel(api, agent, name=f"t{i}")
        clock.advance(seconds=1)
    assert await _all_pages(api, limit=1) == ["t4", "t3", "t2", "t1", "t0"]
    assert await _all_pages(api, limit=2) == ["t4", "t3", "t2", "t1", "t0"]
    whole = (await api.get("/v1/tunnels", params={"limit": 200})).json()
    assert _names(whole) == ["t4", "t3", "t2", "t1", "t0"] and whole["nextCursor"] is None
    exact = (await api.get("/v1/tunnels", params={"limit": 5})).json()
    assert exact["nextCursor"] is None


async def test_pages_are_stable_under_concurrent_inserts(
    api: httpx.AsyncClient, clock: FrozenClock
) -> None:
    agent = await new_agent(api)
    for i in range(6):
        await new_tunnel(api, agent, name=f"old{i}")
        clock.advance(seconds=1)
    first = (await api.get("/v1/tunnels", params={"limit": 2})).json()
    assert _names(first) == ["old5", "old4"]
    # Tunnels created while a client pages through must neither repeat nor hide older rows.
    await new_tunnel(api, agent, name="new-a")
    second = (
        await api.get("/v1/tunnels", params={"limit": 2, "cursor": first["nextCursor"]})
    ).json()
    clock.advance(seconds=1)
    await new_tunnel(api, agent, name="new-b")
    third = (
        await api.get("/v1/tunnels", params={"limit": 10, "cursor": second["nextCursor"]})
    ).json()
    seen = _names(first) + _names(second) + _names(third)
    assert seen == ["old5", "old4", "old3", "old2", "old1", "old0"]
    assert third["nextCursor"] is None
    assert _names((await api.get("/v1/tunnels", params={"limit": 2})).json()) == ["new-b", "new-a"]


async def test_rows_sharing_a_timestamp_are_paged_without_gaps(api: httpx.AsyncClient) -> None:
    agent = await new_agent(api)
    created = {(await new_tunnel(api, agent))["id"] for _ in range(7)}
    first = (await api.get("/v1/tunnels", params={"limit": 3})).json()
    # Inserted with the same (frozen) timestamp between two page reads.
    await new_tunnel(api, agent)
    seen = [t["id"] for t in first["items"]]
    cursor = first["nextCursor"]
    while cursor:
        page = (await api.get("/v1/tunnels", params={"limit": 3, "cursor": cursor})).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["nextCursor"]
    assert len(seen) == len(set(seen)), "a tunnel was listed twice"
    assert created <= set(seen), "a tunnel that existed before paging began was skipped"
