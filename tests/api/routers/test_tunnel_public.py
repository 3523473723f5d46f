"""Public tunnels: URLs on the edge for HTTP(S), hub ports for TCP/UDP (bounds, races)."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from portway.api.context import ApiContext
from portway.store import tunnels as store_tunnels
from tests.api.helpers import assert_error, error_fields
from tests.api.tunnel_helpers import (
    new_agent,
    new_tunnel,
    post_tunnel,
    set_port_range,
)


async def test_public_http_url(api: httpx.AsyncClient, agent: str, ctx: ApiContext) -> None:
    tunnel = await new_tunnel(api, agent, target="localhost:3000", name="My_App.v2", public=True)
    edge_port = ctx.config.edge_listen.port
    match = re.fullmatch(
        rf"http://(my-app-v2-[a-z0-9]{{6}})\.localhost:{edge_port}", tunnel["publicUrl"]
    )
    assert match, tunnel["publicUrl"]
    assert tunnel["hubPort"] is None
    # The URL stays put across a rename.
    renamed = (await api.patch(f"/v1/tunnels/{tunnel['id']}", json={"name": "web"})).json()
    assert renamed["publicUrl"] == tunnel["publicUrl"]
    https = await new_tunnel(api, agent, target="localhost:8443", public=True)
    assert https["publicUrl"].startswith("http://https-") and https["hubPort"] is None


async def test_public_slugs_are_dns_labels(api: httpx.AsyncClient, agent: str) -> None:
    slugs = set()
    for name in ("x" * 100, "UPPER-lower", "9-lives", "a.b_c-d", "a" + "-" * 98 + "b"):
        tunnel = await new_tunnel(api, agent, target="localhost:80", name=name, public=True)
        slug = tunnel["publicUrl"].removeprefix("http://").split(".localhost:")[0]
        assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", slug) and len(slug) <= 63, slug
        slugs.add(slug)
    assert len(slugs) == 5


async def test_public_tcp_gets_a_hub_port(
    api: httpx.AsyncClient, agent: str, ctx: ApiContext
) -> None:
    low, high = ctx.config.port_range
    tcp = await new_tunnel(api, agent, public=True)
    assert low <= tcp["hubPort"] <= high
    assert tcp["publicUrl"] == f"tcp://localhost:{tcp['hubPort']}"
    udp = await new_tunnel(api, agent, target="localhost:53", protocol="udp", public=True)
    assert udp["publicUrl"] == f"udp://localhost:{udp['hubPort']}"
    assert udp["hubPort"] != tcp["hubPort"]
    private = await new_tunnel(api, agent)
    assert private["hubPort"] is None and private["publicUrl"] is None


async def test_hub_port_bounds(
    api: httpx.AsyncClient, agent: str, ctx: ApiContext, other: httpx.AsyncClient
) -> None:
    set_port_range(ctx, 21000, 21010)
    for port in (21000, 21010):
        assert (await new_tunnel(api, agent, public=True, hubPort=port))["hubPort"] == port
    for port in (20999, 21011, 0, 65536):
        response = await post_tunnel(api, agent, public=True, hubPort=port)
        assert_error(response, 422)
        assert error_fields(response) == {"hubPort"}
    outside = await post_tunnel(api, agent, public=True, hubPort=20999)
    assert "21000-21010" in outside.json()["error"]["message"]
    taken = await post_tunnel(api, agent, public=True, hubPort=21000)
    assert_error(taken, 409, "hub_port_taken")
    # Hub ports are hub-wide: another workspace cannot take it either.
    elsewhere = await other.post(
        "/v1/tunnels",
        json={"target": "h:1", "agentId": await new_agent(other), "public": True, "hubPort": 21010},
    )
    assert_error(elsewhere, 409, "hub_port_taken")


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"hubPort": 20500}, "public"),
        ({"hubPort": 20500, "public": False}, "public"),
        ({"hubPort": 20500, "public": True, "target": "localhost:80"}, "http"),
        ({"hubPort": 20500, "public": True, "protocol": "https"}, "https"),
    ],
)
async def test_hub_port_only_for_public_tcp_udp(
    api: httpx.AsyncClient, agent: str, fields: dict[str, Any], needle: str
) -> None:
    response = await post_tunnel(api, agent, **fields)
    error = assert_error(response, 422)
    assert error_fields(response) == {"hubPort"} and needle in error["message"]


async def test_no_free_hub_port(api: httpx.AsyncClient, agent: str, ctx: ApiContext) -> None:
    set_port_range(ctx, 21100, 21101)
    first = await new_tunnel(api, agent, public=True)
    second = await new_tunnel(api, agent, public=True)
    assert {first["hubPort"], second["hubPort"]} == {21100, 21101}
    full = await post_tunnel(api, agent, public=True)
    error = assert_error(full, 409, "no_free_hub_port")
    assert "21100-21101" in error["message"]
    # Private and HTTP tunnels need no hub port and are still fine.
    await new_tunnel(api, agent)
    await new_tunnel(api, agent, target="localhost:80", public=True)
    # Deleting a tunnel frees its port.
    assert (await api.delete(f"/v1/tunnels/{first['id']}")).status_code == 204
    assert (await new_tunnel(api, agent, public=True))["hubPort"] == first["hubPort"]


async def test_concurrent_public_tunnels_get_distinct_ports(
    api: httpx.AsyncClient, agent: str, ctx: ApiContext
) -> None:
    set_port_range(ctx, 21200, 21399)
    responses = await asyncio.gather(*(post_tunnel(api, agent, public=True) for _ in range(8)))
    assert [r.status_code for r in responses] == [201] * 8, [r.text for r in responses]
    assert len({r.json()["hubPort"] for r in responses}) == 8


async def test_a_lost_port_race_is_retried(
    api: httpx.AsyncClient, agent: str, ctx: ApiContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every request picks the lowest free port, so concurrent requests are bound to collide;
    # the unique constraint refuses all but one and the losers retry with a fresh view.
    monkeypatch.setattr(store_tunnels, "secrets", SimpleNamespace(choice=min))
    set_port_range(ctx, 21400, 21409)
    responses = await asyncio.gather(*(post_tunnel(api, agent, public=True) for _ in range(3)))
    assert [r.status_code for r in responses] == [201] * 3, [r.text for r in responses]
    assert sorted(r.json()["hubPort"] for r in responses) == [21400, 21401, 21402]
