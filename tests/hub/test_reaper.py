"""Expiry of tunnels and shares, driven second by second with a frozen clock.

The reaper's loop runs `run_once` every second; these tests replay that loop in simulated time
and check that each expiry happens within 5 s of `expiresAt`, with its events.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

import httpx

from portway.api.context import ApiContext
from portway.domain.clock import FrozenClock
from portway.hub.reaper import INTERVAL_SECONDS, Reaper
from portway.store import Database
from portway.store import shares as share_store
from tests.api.tunnel_helpers import events, new_agent, new_share, new_tunnel


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def run_until(
    reaper: Reaper, clock: FrozenClock, done: Callable[[], Awaitable[bool]], *, limit: int
) -> None:
    """Advance the clock by the reaper's interval and run it, like its loop, until `done()`."""
    for _ in range(limit):
        if await done():
            return
        clock.advance(seconds=INTERVAL_SECONDS)
        await reaper.run_once()
    raise AssertionError("nothing expired in the simulated time")


async def test_tunnel_expires_within_five_seconds_with_its_events(
    api: httpx.AsyncClient, ctx: ApiContext, clock: FrozenClock, db: Database
) -> None:
    agent = await new_agent(api)
    tunnel = await new_tunnel(api, agent, expiresIn=90)
    await api.post(f"/v1/tunnels/{tunnel['id']}/connect", json={"agentId": agent})
    share = await new_share(api, tunnel["id"])
    keeper = await new_tunnel(api, agent, name="keeper")
    reaper = Reaper(db, clock)
    expires = at(tunnel["expiresAt"])

    async def gone() -> bool:
        return (await api.get(f"/v1/tunnels/{tunnel['id']}")).status_code == 404

    await run_until(reaper, clock, gone, limit=200)
    assert expires <= clock.now() and (clock.now() - expires).total_seconds() <= 5
    assert (await api.get(f"/v1/tunnels/{keeper['id']}")).status_code == 200

    [expired] = await events(ctx, "tunnel.expired")
    assert expired.object_id == tunnel["id"]
    assert expired.payload["tunnel"]["expiresAt"] == expires.isoformat()
    tail = [e for e in await events(ctx) if e.seq >= expired.seq]
    assert [(e.type, e.payload.get("reason")) for e in tail] == [
        ("tunnel.expired", None),
        ("connection.deleted", "expired"),
        ("share.revoked", "tunnel_deleted"),
        ("tunnel.deleted", "expired"),
    ]
    assert tail[2].object_id == share["id"]
    assert await reaper.run_once() == 0  # nothing left to expire, no event repeated
    assert len(await events(ctx, "tunnel.expired")) == 1


async def test_share_stops_admitting_and_expires_once(
    api: httpx.AsyncClient, ctx: ApiContext, clock: FrozenClock, db: Database
) -> None:
    tunnel = await new_tunnel(api, await new_agent(api), target="localhost:3000")
    created = await api.post(
        f"/v1/tunnels/{tunnel['id']}/shares", json={"name": "preview", "expiresIn": "1h"}
    )
    share = created.json()
    revoked = await new_share(api, tunnel["id"], expiresIn="1h")
    await api.delete(f"/v1/shares/{revoked['id']}")
    lasting = await new_share(api, tunnel["id"], expiresIn="7d")
    reaper = Reaper(db, clock)

    async def admitted() -> bool:
        async with db.session() as session:
            found = await share_store.authenticate(session, share["token"], now=clock.now())
        return found is not None

    assert await admitted()
    clock.advance(minutes=59, seconds=55)

    async def recorded() -> bool:
        return bool(await events(ctx, "share.expired"))

    await run_until(reaper, clock, recorded, limit=20)
    lag = (clock.now() - at(share["expiresAt"])).total_seconds()
    assert 0 <= lag <= 5
    assert not await admitted()
    shown = (await api.get(f"/v1/shares/{share['id']}")).json()
    assert shown["status"] == "expired"
    [expired] = await events(ctx, "share.expired")
    assert expired.object_id == share["id"] and expired.payload["reason"] == "expired"
    assert expired.payload["share"]["name"] == "preview"
    assert "token" not in expired.payload["share"]

    clock.advance(hours=2)
    assert await reaper.run_once() == 0  # recorded once; the revoked share never expires
    assert [e.object_id for e in await events(ctx, "share.expired")] == [share["id"]]
    assert (await api.get(f"/v1/shares/{lasting['id']}")).json()["status"] == "active"
    assert (await api.get(f"/v1/tunnels/{tunnel['id']}")).status_code == 200


async def test_many_expiries_in_one_pass(
    api: httpx.AsyncClient, ctx: ApiContext, clock: FrozenClock, db: Database
) -> None:
    tunnel = await new_tunnel(api, await new_agent(api))
    for _ in range(5):
        await new_share(api, tunnel["id"], expiresIn="1h")
    clock.advance(hours=1)
    reaper = Reaper(db, clock)
    assert await reaper.run_once() == 5
    assert len(await events(ctx, "share.expired")) == 5


async def test_reaper_expires_shares_on_its_timer(
    api: httpx.AsyncClient, ctx: ApiContext, clock: FrozenClock, db: Database
) -> None:
    tunnel = await new_tunnel(api, await new_agent(api))
    share = await new_share(api, tunnel["id"], expiresIn="1h")
    clock.advance(hours=1)
    reaper = Reaper(db, clock, interval=0.01)
    reaper.start()
    try:
        async with asyncio.timeout(10):
            while not await events(ctx, "share.expired"):
                await asyncio.sleep(0.01)
    finally:
        await reaper.stop()
    [expired] = await events(ctx, "share.expired")
    assert uuid.UUID(expired.object_id) == uuid.UUID(share["id"])
