"""The edge's share cache: rows reused for a second, dropped at once when this hub revokes."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit

import httpx
from sqlalchemy import update

from portway.api.context import ApiContext
from portway.hub.edge.router import Deny, Forward
from portway.hub.edge.share_cache import MISS, ShareCache
from portway.store.models import Share
from tests.hub.edge.test_router import setup


async def test_rows_are_reused_within_the_ttl_and_dropped_on_revocation(
    api: httpx.AsyncClient, ctx: ApiContext
) -> None:
    router, base, share = await setup(api, ctx)
    ticks = [100.0]
    router.shares = ShareCache(ctx.db, now=lambda: ticks[0])
    assert isinstance(await router.decide("GET", base + "x", "edge"), Forward)

    # Revoked by another hub process on the same store: seen once the row is a second old.
    async with ctx.db.session() as session:
        await session.execute(
            update(Share)
            .where(Share.id == uuid.UUID(share["id"]))
            .values(revoked_at=ctx.clock.now())
        )
    ticks[0] = 100.9
    assert isinstance(await router.decide("GET", base + "x", "edge"), Forward)
    ticks[0] = 101.0
    stale = await router.decide("GET", base + "x", "edge")
    assert isinstance(stale, Deny) and stale.status == 410

    # Revoked through this hub's API: the very next request is refused, TTL or not.
    tunnel_id = share["tunnelId"]
    created = (await api.post(f"/v1/tunnels/{tunnel_id}/shares", json={"name": "b"})).json()
    other = urlsplit(created["shareUrl"]).path
    assert isinstance(await router.decide("GET", other + "x", "edge"), Forward)
    ctx.revocations = router.shares
    assert (await api.delete(f"/v1/shares/{created['id']}")).status_code == 204
    revoked = await router.decide("GET", other + "x", "edge")
    assert isinstance(revoked, Deny) and revoked.status == 410


async def test_unknown_and_malformed_tokens_are_not_remembered(
    api: httpx.AsyncClient, ctx: ApiContext
) -> None:
    router, _, _ = await setup(api, ctx)
    for token in ("pws_" + "x" * 43, "nope", "pws_" + "y" * 300):
        denied = await router.decide("GET", f"/s/{token}/", "edge")
        assert isinstance(denied, Deny) and denied.status == 404
    assert await router.shares.get("pws_" + "x" * 43) is None
    assert router.shares._rows == {}


class CountingCache(ShareCache):
    """Counts store reads and holds each one until `release` is set."""

    def __init__(self, ctx: ApiContext) -> None:
        super().__init__(ctx.db)
        self.reads = 0
        self.reading = asyncio.Event()
        self.release = asyncio.Event()

    async def _load(self, token: str, digest: str) -> Share | None:
        self.reads += 1
        self.reading.set()
        await self.release.wait()
        return await super()._load(token, digest)


async def test_requests_that_miss_together_share_one_read(
    api: httpx.AsyncClient, ctx: ApiContext
) -> None:
    _, base, _ = await setup(api, ctx)
    token = base.split("/")[2]
    cache = CountingCache(ctx)
    waiting = [asyncio.create_task(cache.get(token)) for _ in range(20)]
    await asyncio.wait_for(cache.reading.wait(), 5)
    waiting[0].cancel()  # a client that left does not cancel the read for the others
    cache.release.set()
    rows = await asyncio.gather(*waiting[1:])
    assert cache.reads == 1
    assert len({row.id for row in rows if row is not None}) == 1 and None not in rows
    assert cache.cached(token) is not MISS


async def test_a_read_under_way_at_revocation_is_not_remembered(
    api: httpx.AsyncClient, ctx: ApiContext
) -> None:
    _, base, _ = await setup(api, ctx)
    token = base.split("/")[2]
    cache = CountingCache(ctx)
    reading = asyncio.create_task(cache.get(token))
    await asyncio.wait_for(cache.reading.wait(), 5)
    cache.forget()
    cache.release.set()
    assert await reading is not None  # its waiters asked before the revocation
    assert cache.cached(token) is MISS
