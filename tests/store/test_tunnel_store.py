"""Repository functions the data plane, the reaper and the event readers rely on."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest

from portway.api.context import ApiContext
from portway.domain.clock import FrozenClock
from portway.hub.reaper import Reaper
from portway.store import Database, events, tunnels
from tests.api.tunnel_helpers import events as all_events
from tests.api.tunnel_helpers import new_agent, new_tunnel


async def _workspace(api: httpx.AsyncClient) -> uuid.UUID:
    return uuid.UUID((await api.get("/v1/hub")).json()["workspace"]["id"])


async def test_events_are_numbered_in_insert_order(api: httpx.AsyncClient, ctx: ApiContext) -> None:
    workspace = await _workspace(api)
    now = ctx.clock.now()
    async with ctx.db.session() as session:
        for i in range(3):
            await events.append(session, workspace, "tunnel.created", f"obj{i}", {"i": i}, now)
    async with ctx.db.session() as session:
        await events.append(session, workspace, "share.revoked", uuid.uuid4(), {}, now)
    async with ctx.db.session() as session:
        rows = await events.after(session, workspace)
        assert [r.payload.get("i") for r in rows] == [0, 1, 2, None]
        seqs = [r.seq for r in rows]
        assert seqs == sorted(seqs) and len(set(seqs)) == 4 and seqs[0] >= 1
        assert len({r.id for r in rows}) == 4
        later = await events.after(session, workspace, seqs[1], limit=1)
        assert [r.object_id for r in later] == ["obj2"]
        assert await events.after(session, uuid.uuid4()) == []


async def test_unknown_event_type_is_a_programming_error(
    api: httpx.AsyncClient, ctx: ApiContext
) -> None:
    workspace = await _workspace(api)
    async with ctx.db.session() as session:
        with pytest.raises(ValueError, match="unknown event type"):
            await events.append(session, workspace, "tunnel.exploded", "x", {}, ctx.clock.now())


async def test_an_event_is_rolled_back_with_its_change(
    api: httpx.AsyncClient, ctx: ApiContext
) -> None:
    agent = await new_agent(api)
    tunnel = await new_tunnel(api, agent, name="keep")
    before = len(await all_events(ctx))
    workspace = await _workspace(api)

    async def fail_after_renaming() -> None:
        async with ctx.db.session() as session:
            row = await tunnels.get(session, workspace, "keep")
            await tunnels.update(session, row, now=ctx.clock.now(), name="renamed")
            raise RuntimeError("the request failed after the change")

    with pytest.raises(RuntimeError):
        await fail_after_renaming()
    assert len(await all_events(ctx)) == before
    assert (await api.get(f"/v1/tunnels/{tunnel['id']}")).json()["name"] == "keep"


async def test_data_plane_status_changes(api: httpx.AsyncClient, ctx: ApiContext) -> None:
    agent = await new_agent(api)
    tunnel = await new_tunnel(api, agent)
    tunnel_id, now = uuid.UUID(tunnel["id"]), ctx.clock.now()

    async def set_status(status: str, reason: str | None = None) -> bool:
        async with ctx.db.session() as session:
            return await tunnels.set_status(session, tunnel_id, status, reason, now=now)  # type: ignore[arg-type]

    assert await set_status("active") is True
    assert await set_status("active") is False
    assert await set_status("error", "connection refused by 10.0.0.5:5432") is True
    shown = (await api.get(f"/v1/tunnels/{tunnel['id']}")).json()
    assert shown["status"] == "error"
    assert shown["statusReason"] == "connection refused by 10.0.0.5:5432"
    # A new reason for the same status is recorded without a new event.
    assert await set_status("error", "no route to host") is False
    assert (await api.get(f"/v1/tunnels/{tunnel['id']}")).json()["statusReason"] == (
        "no route to host"
    )
    changes = await all_events(ctx, "tunnel.status_changed")
    assert [(e.payload["previousStatus"], e.payload["tunnel"]["status"]) for e in changes] == [
        ("connecting", "active"),
        ("active", "error"),
    ]
    # Only a user pauses and resumes; the data plane cannot override a pause.
    await api.patch(f"/v1/tunnels/{tunnel['id']}", json={"status": "paused"})
    assert await set_status("active") is False
    assert (await api.get(f"/v1/tunnels/{tunnel['id']}")).json()["status"] == "paused"
    with pytest.raises(ValueError, match="only a user pauses"):
        await set_status("paused")
    async with ctx.db.session() as session:
        assert not await tunnels.set_status(session, uuid.uuid4(), "active", None, now=now)


async def test_stats_batches_add_up(api: httpx.AsyncClient, ctx: ApiContext) -> None:
    agent = await new_agent(api)
    tunnel = await new_tunnel(api, agent)
    tunnel_id = uuid.UUID(tunnel["id"])
    t0 = ctx.clock.now()

    async def batch(**counts: object) -> None:
        async with ctx.db.session() as session:
            await tunnels.add_stats(session, tunnel_id, **counts)  # type: ignore[arg-type]

    # Batches from several hub nodes arriving at once must all count. A node reports a close
    # only after the batch with its open, so no batch takes the running total below zero.
    await asyncio.gather(
        batch(opened=3, bytes_in=100, bytes_out=1000, last_connection_at=t0),
        batch(opened=2, closed=1, bytes_in=50, last_connection_at=t0 + timedelta(seconds=9)),
        batch(opened=1, closed=1, bytes_out=5, last_connection_at=t0 + timedelta(seconds=3)),
        batch(datagrams_in=7, datagrams_out=6, datagrams_dropped=1),
        batch(datagrams_in=3, datagrams_dropped=2),
    )
    stats = (await api.get(f"/v1/tunnels/{tunnel['id']}")).json()["stats"]
    assert stats == {
        "activeConnections": 4,
        "totalConnections": 6,
        "bytesIn": 150,
        "bytesOut": 1005,
        "lastConnectionAt": "2026-01-01T00:00:09Z",
        "datagramsIn": 10,
        "datagramsOut": 6,
        "datagramsDropped": 3,
    }
    await batch(closed=10, bytes_in=2**40)
    stats = (await api.get(f"/v1/tunnels/{tunnel['id']}")).json()["stats"]
    assert stats["activeConnections"] == 0 and stats["bytesIn"] == 150 + 2**40
    assert stats["lastConnectionAt"] == "2026-01-01T00:00:09Z"
    # Stats are traffic, not changes: no event, no updatedAt bump.
    assert (await api.get(f"/v1/tunnels/{tunnel['id']}")).json()["updatedAt"] == tunnel["updatedAt"]
    assert [e.type for e in await all_events(ctx)] == ["tunnel.created"]


async def test_expired_tunnels_are_deleted_by_the_reaper(
    api: httpx.AsyncClient, ctx: ApiContext, clock: FrozenClock, db: Database
) -> None:
    agent = await new_agent(api)
    short = await new_tunnel(api, agent, expiresIn=60)
    hour = await new_tunnel(api, agent, expiresIn="1h")
    forever = await new_tunnel(api, agent)
    reaper = Reaper(db, clock)
    clock.advance(seconds=59)
    assert await reaper.run_once() == 0
    clock.advance(seconds=1)
    assert await reaper.run_once() == 1
    assert (await api.get(f"/v1/tunnels/{short['id']}")).status_code == 404
    clock.advance(hours=1)
    assert await reaper.run_once() == 1
    remaining = [t["id"] for t in (await api.get("/v1/tunnels")).json()["items"]]
    assert remaining == [forever["id"]]
    deleted = await all_events(ctx, "tunnel.deleted")
    assert [(e.object_id, e.payload["reason"]) for e in deleted] == [
        (short["id"], "expired"),
        (hour["id"], "expired"),
    ]


async def test_reaper_runs_on_its_timer(
    api: httpx.AsyncClient, clock: FrozenClock, db: Database
) -> None:
    agent = await new_agent(api)
    tunnel = await new_tunnel(api, agent, expiresIn=1)
    clock.advance(seconds=1)
    reaper = Reaper(db, clock, interval=0.01)
    reaper.start()
    try:
        async with asyncio.timeout(10):
            while (await api.get(f"/v1/tunnels/{tunnel['id']}")).status_code != 404:
                await asyncio.sleep(0.01)
    finally:
        await reaper.stop()
    await reaper.stop()  # stopping twice is harmless
