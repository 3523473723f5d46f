"""Event tails wait briefly at gaps in `seq`; delivery leases keep hub nodes from doubling up."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx

from portway.api.context import ApiContext
from portway.store import deliveries, webhooks
from portway.store.event_feed import EventTail
from portway.store.models import Event


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _workspace(api: httpx.AsyncClient) -> uuid.UUID:
    return uuid.UUID((await api.get("/v1/hub")).json()["workspace"]["id"])


async def _insert(ctx: ApiContext, workspace: uuid.UUID, *seqs: int, kind: str = "x") -> None:
    """Events with chosen `seq`s, as transactions committing out of order would leave them."""
    async with ctx.db.session() as session:
        for seq in seqs:
            session.add(
                Event(
                    seq=seq, id=uuid.uuid4(), workspace_id=workspace, type="tunnel.created",
                    object_id=f"{kind}{seq}", payload={}, created_at=ctx.clock.now(),
                )
            )  # fmt: skip


async def test_tail_waits_at_a_gap_then_gives_up_on_it(
    api: httpx.AsyncClient, other: httpx.AsyncClient, ctx: ApiContext
) -> None:
    mine = await _workspace(api)
    theirs = await _workspace(other)
    time = FakeTime()
    tail = EventTail(0, gap_grace=2.0, monotonic=time)

    async def read() -> list[str]:
        async with ctx.db.session() as session:
            return [e.object_id for e in await tail.read(session, workspace_id=mine)]

    await _insert(ctx, mine, 1, 2, 4)
    assert await read() == ["x1", "x2"]
    time.now += 1.0
    assert await read() == []  # 3 may still be committing
    await _insert(ctx, mine, 3)
    assert await read() == ["x3", "x4"] and tail.position == 4
    await _insert(ctx, theirs, 5, kind="theirs")
    await _insert(ctx, mine, 7)
    assert await read() == [] and tail.position == 5  # theirs is passed over, 6 awaited
    time.now += 2.5
    assert await read() == ["x7"] and tail.position == 7  # 6 was rolled back: skipped
    await _insert(ctx, mine, 8)
    assert await read() == ["x8"]


async def test_a_delivery_is_leased_to_one_worker_at_a_time(
    api: httpx.AsyncClient, ctx: ApiContext
) -> None:
    now = ctx.clock.now()
    lease = timedelta(seconds=60)
    async with ctx.db.session() as session:
        hook, _secret = await webhooks.create(
            session, await _workspace(api), url="https://8.8.8.8/", events=["*"],
            description=None, enabled=True, now=now,
        )  # fmt: skip
        queued = await webhooks.enqueue_test(session, hook, now=now)
    async with ctx.db.session() as session:
        assert await deliveries.claim(session, queued.id, owner="a", now=now, lease=lease)
        assert not await deliveries.claim(session, queued.id, owner="b", now=now, lease=lease)
        assert await deliveries.due(session, now=now, limit=10, skip_webhooks=()) == []
    async with ctx.db.session() as session:
        later = now + lease
        assert await deliveries.claim(session, queued.id, owner="b", now=later, lease=lease)
    async with ctx.db.session() as session:
        await deliveries.release(session, owner="b")
    async with ctx.db.session() as session:
        [(head, _hook)] = await deliveries.due(session, now=now, limit=10, skip_webhooks=())
        assert head.id == queued.id and head.locked_by is None
        assert await deliveries.due(session, now=now, limit=10, skip_webhooks={hook.id}) == []
