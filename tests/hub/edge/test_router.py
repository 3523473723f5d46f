"""Edge routing and share policy against a real store with a frozen clock: expiry, the
rate-limit window sliding, paused tunnels, unknown hosts, and the access-log writer."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx

from portway.api.context import ApiContext
from portway.domain.clock import FrozenClock
from portway.hub.core.access_log import AccessLog
from portway.hub.dataplane import routes
from portway.hub.edge.router import Deny, Forward, Router, host_slug, split_share
from portway.store.shares import Access
from tests.api.tunnel_helpers import new_agent, new_tunnel


async def setup(
    api: httpx.AsyncClient, ctx: ApiContext, **policy: Any
) -> tuple[Router, str, dict[str, Any]]:
    agent = await new_agent(api)
    tunnel = await new_tunnel(api, agent, target="localhost:8080", protocol="http", public=True)
    created = await api.post(f"/v1/tunnels/{tunnel['id']}/shares", json={"name": "guest", **policy})
    assert created.status_code == 201, created.text
    async with ctx.db.session() as session:
        snap = await routes.load(session)
    router = Router(ctx.db, ctx.clock, routes.RouteTable(snap), "localhost")
    return router, urlsplit(created.json()["shareUrl"]).path, created.json()


async def test_expiry_follows_the_hub_clock(
    api: httpx.AsyncClient, ctx: ApiContext, clock: FrozenClock
) -> None:
    router, base, _ = await setup(api, ctx, expiresIn="1h")
    assert isinstance(await router.decide("GET", base + "x", "edge"), Forward)
    clock.advance(minutes=59, seconds=59)
    assert isinstance(await router.decide("GET", base + "x", "edge"), Forward)
    clock.advance(seconds=1)
    denied = await router.decide("GET", base + "x", "edge")
    assert isinstance(denied, Deny) and denied.status == 410


async def test_rate_limit_window_slides_at_the_edge(
    api: httpx.AsyncClient, ctx: ApiContext, clock: FrozenClock
) -> None:
    router, base, _ = await setup(api, ctx, rateLimit=3)
    results = []
    for _ in range(3):
        results.append(await router.decide("GET", base, "edge"))
        clock.advance(seconds=10)
    assert all(isinstance(r, Forward) for r in results)
    assert [dict(r.headers)["X-RateLimit-Remaining"] for r in results] == ["2", "1", "0"]
    refused = await router.decide("GET", base, "edge")  # t = 30 s
    assert isinstance(refused, Deny) and refused.status == 429
    assert dict(refused.headers)["Retry-After"] == "30"
    clock.advance(seconds=29, microseconds=999_000)
    assert isinstance(await router.decide("GET", base, "edge"), Deny)
    clock.advance(microseconds=1000)  # t = 60 s: the first request left the window
    assert isinstance(await router.decide("GET", base, "edge"), Forward)
    assert isinstance(await router.decide("GET", base, "edge"), Deny)


async def test_public_hosts_and_paused_tunnels(api: httpx.AsyncClient, ctx: ApiContext) -> None:
    router, _, _ = await setup(api, ctx)
    route = next(iter(router._table.snapshot.routes.values()))
    assert isinstance(await router.decide("GET", "/", f"{route.slug}.localhost:7081"), Forward)
    unknown = await router.decide("GET", "/", "other.localhost")
    assert isinstance(unknown, Deny) and unknown.status == 404
    await api.patch(f"/v1/tunnels/{route.id}", json={"status": "paused"})
    async with ctx.db.session() as session:
        snap = await routes.load(session)
    paused = Router(ctx.db, ctx.clock, routes.RouteTable(snap), "localhost")
    denied = await paused.decide("GET", "/", f"{route.slug}.localhost")
    assert isinstance(denied, Deny) and denied.status == 503


def test_host_and_share_parsing() -> None:
    assert host_slug("Web-1.LOCALHOST:7081", "localhost") == "web-1"
    assert host_slug("a.b.localhost", "localhost") is None
    assert host_slug("localhost", "localhost") is None
    assert split_share("/s/pws_x/a/b?q=1") == ("pws_x", "/a/b?q=1")
    assert split_share("/s/pws_x?q") == ("pws_x", "?q")
    assert split_share("/other") is None


async def test_access_log_batches_allowed_and_denied(
    api: httpx.AsyncClient, ctx: ApiContext, clock: FrozenClock
) -> None:
    _, _, created = await setup(api, ctx)
    share = (await api.get(f"/v1/shares/{created['id']}")).json()
    writer = AccessLog(ctx.db)
    async with ctx.db.session() as session:
        snap = await routes.load(session)
    workspace = next(iter(snap.routes.values())).workspace_id
    for status, allowed in ((200, True), (403, False)):
        writer.add(Access(
            share_id=uuid.UUID(share["id"]), workspace_id=workspace, at=clock.now(),
            remote_addr="203.0.113.7", method="GET", path="/x", status=status, allowed=allowed,
            reason=None if allowed else "path_not_allowed", user_agent="curl",
        ))  # fmt: skip
    await writer.flush()
    logs = (await api.get(f"/v1/shares/{created['id']}/access-logs")).json()["items"]
    assert sorted(item["statusCode"] for item in logs) == [200, 403]
    after = (await api.get(f"/v1/shares/{created['id']}")).json()
    assert after["accessCount"] == 1 and after["lastAccessedAt"] is not None
