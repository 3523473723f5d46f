"""The edge's share cache: rows reused for a second, dropped at once when this hub revokes."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import httpx
from sqlalchemy import update

from portway.api.context import ApiContext
from portway.hub.edge.policy import Deny, Forward
from portway.hub.edge.share_cache import ShareCache
from portway.store.models import Share
from tests.hub.test_edge_policy import setup


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
    ctx.share_revoked = router.shares.forget
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
