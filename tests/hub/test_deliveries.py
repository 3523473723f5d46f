"""The delivery worker against a real receiver, driven pass by pass with a frozen clock.

Each test creates webhooks and events through the API, then calls `run_once()` and moves the
clock, so retry schedules are checked exactly and nothing waits in real time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from portway.api.context import ApiContext
from portway.domain.clock import FrozenClock
from portway.domain.webhook_rules import RetryPolicy
from portway.hub import egress
from portway.hub.webhook_delivery import DeliverySettings, DeliveryWorker
from portway.store import Database
from tests.api.tunnel_helpers import events, new_agent, new_tunnel
from tests.webhook_receiver import SLOW, Receiver, message_ids

SETTINGS = DeliverySettings(
    policy=RetryPolicy(delays=(5.0, 60.0), jitter=0.0), timeout=2.0, gap_grace=0.0
)


@pytest.fixture(autouse=True)
def _private_allowed(ctx: ApiContext) -> None:
    # The receiver listens on loopback, which only a hub started with the flag accepts.
    ctx.url_guard = egress.Guard(allow_private=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(check_time=False) as running:
        yield running


def make_worker(db: Database, clock: FrozenClock, **changes: Any) -> DeliveryWorker:
    allow = changes.pop("allow_private", True)
    settings = dataclasses.replace(SETTINGS, **changes)
    return DeliveryWorker(db, clock, allow_private=allow, settings=settings)


@pytest.fixture
async def worker(db: Database, clock: FrozenClock) -> AsyncIterator[DeliveryWorker]:
    running = make_worker(db, clock)
    yield running
    await running.stop()


async def subscribe(api: httpx.AsyncClient, receiver: Receiver, **fields: Any) -> dict[str, Any]:
    response = await api.post("/v1/webhooks", json={"url": receiver.url, **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    receiver.secret = created["secret"]
    return created


async def drain(worker: DeliveryWorker) -> int:
    """Run passes until one makes no attempt; returns how many attempts were made."""
    total = 0
    while made := await worker.run_once():
        total += made
    return total


async def deliveries(api: httpx.AsyncClient, hook: dict[str, Any]) -> list[dict[str, Any]]:
    """The webhook's deliveries in queue order (oldest first)."""
    page = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"limit": 200})).json()
    return list(reversed(page["items"]))


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_events_are_delivered_signed_and_only_once(
    api: httpx.AsyncClient,
    other: httpx.AsyncClient,
    ctx: ApiContext,
    db: Database,
    clock: FrozenClock,
    worker: DeliveryWorker,
    receiver: Receiver,
) -> None:
    agent = await new_agent(api)
    await new_tunnel(api, agent, name="before")  # older than the webhook: never delivered
    hook = await subscribe(api, receiver, events=["tunnel.created", "tunnel.deleted"])
    tunnel = await new_tunnel(api, agent, name="db")
    await api.post(f"/v1/tunnels/{tunnel['id']}/shares", json={"name": "not subscribed"})
    assert (await api.delete(f"/v1/tunnels/{tunnel['id']}")).status_code == 204
    await new_tunnel(other, await new_agent(other), name="elsewhere")  # another workspace

    assert await drain(worker) == 2
    got = receiver.requests()
    assert all(r.verified for r in got), [r.error for r in got]
    assert [r.document["type"] for r in got] == ["tunnel.created", "tunnel.deleted"]
    assert [r.document["data"]["tunnel"]["name"] for r in got] == ["db", "db"]
    created = [e for e in await events(ctx, "tunnel.created") if e.object_id == tunnel["id"]]
    assert got[0].document["data"] == created[0].payload
    assert at(got[0].document["timestamp"]) == created[0].created_at
    assert got[0].timestamp == str(int(clock.now().timestamp()))
    listed = await deliveries(api, hook)
    assert [d["id"] for d in listed] == [r.message_id for r in got]
    assert [d["status"] for d in listed] == ["succeeded", "succeeded"]
    assert [d["eventSeq"] for d in listed] == sorted(d["eventSeq"] for d in listed)
    [attempt] = listed[0]["attempts"]
    assert attempt["number"] == 1 and attempt["statusCode"] == 200 and attempt["error"] is None
    assert attempt["latencyMs"] >= 0 and listed[0]["completedAt"] is not None

    # The fan-out cursor is durable: a fresh worker (a restarted hub) repeats nothing.
    again = make_worker(db, clock)
    try:
        assert await drain(again) == 0
    finally:
        await again.stop()
    assert len(receiver.requests()) == 2


async def test_failed_attempts_are_retried_on_schedule(
    api: httpx.AsyncClient, clock: FrozenClock, worker: DeliveryWorker, receiver: Receiver
) -> None:
    hook = await subscribe(api, receiver)
    receiver.answer(500, 503)
    await new_tunnel(api, await new_agent(api))
    start = clock.now()
    assert await worker.run_once() == 1
    [pending] = await deliveries(api, hook)
    assert pending["status"] == "pending" and len(pending["attempts"]) == 1
    assert at(pending["nextAttemptAt"]) == start + timedelta(seconds=5)
    failing = (await api.get(f"/v1/webhooks/{hook['id']}")).json()["failingSince"]
    assert at(failing) == start
    assert await worker.run_once() == 0
    clock.advance(seconds=4.9)
    assert await worker.run_once() == 0
    clock.advance(seconds=0.1)
    assert await worker.run_once() == 1
    clock.advance(seconds=59)
    assert await worker.run_once() == 0
    clock.advance(seconds=1)
    assert await worker.run_once() == 1
    [done] = await deliveries(api, hook)
    assert done["status"] == "succeeded" and done["nextAttemptAt"] is None
    assert [a["statusCode"] for a in done["attempts"]] == [500, 503, 200]
    assert [a["error"] for a in done["attempts"]] == [
        "answered HTTP 500",
        "answered HTTP 503",
        None,
    ]
    assert len(set(message_ids(receiver.requests()))) == 1  # one message id across retries
    assert all(r.verified for r in receiver.requests())
    assert (await api.get(f"/v1/webhooks/{hook['id']}")).json()["failingSince"] is None


async def test_order_is_kept_and_a_failed_delivery_lets_the_next_go(
    api: httpx.AsyncClient, clock: FrozenClock, worker: DeliveryWorker, receiver: Receiver
) -> None:
    hook = await subscribe(api, receiver, events=["tunnel.created"])
    receiver.answer(500, 500, 500)  # the first message fails all three attempts
    agent = await new_agent(api)
    for name in ("one", "two", "three"):
        await new_tunnel(api, agent, name=name)
    assert await worker.run_once() == 1
    assert await worker.run_once() == 0  # "two" waits behind "one"
    clock.advance(seconds=5)
    assert await worker.run_once() == 1
    clock.advance(seconds=60)
    assert await worker.run_once() == 1  # third failure: "one" failed for good
    assert await drain(worker) == 2
    names = [r.document["data"]["tunnel"]["name"] for r in receiver.requests()]
    assert names == ["one", "one", "one", "two", "three"]
    listed = await deliveries(api, hook)
    assert [d["status"] for d in listed] == ["failed", "succeeded", "succeeded"]
    assert len(listed[0]["attempts"]) == 3 and listed[0]["completedAt"] is not None


async def test_a_timeout_is_a_failed_attempt(
    api: httpx.AsyncClient, clock: FrozenClock, db: Database, receiver: Receiver
) -> None:
    hook = await subscribe(api, receiver)
    receiver.answer(SLOW)
    await new_tunnel(api, await new_agent(api))
    impatient = make_worker(db, clock, timeout=0.3)
    try:
        assert await impatient.run_once() == 1
        [delivery] = await deliveries(api, hook)
        [attempt] = delivery["attempts"]
        assert attempt["statusCode"] is None and attempt["error"] == "timed out after 0.3 s"
        assert attempt["latencyMs"] >= 300 and delivery["status"] == "pending"
        clock.advance(seconds=5)
        assert await impatient.run_once() == 1
    finally:
        await impatient.stop()
    [delivery] = await deliveries(api, hook)
    assert delivery["status"] == "succeeded"
    assert [a["statusCode"] for a in delivery["attempts"]] == [None, 200]


async def test_private_address_is_refused_at_delivery_time(
    api: httpx.AsyncClient, clock: FrozenClock, db: Database, receiver: Receiver
) -> None:
    # Accepted when the URL was set; the hub that delivers does not allow private addresses.
    hook = await subscribe(api, receiver)
    await new_tunnel(api, await new_agent(api))
    guarded = make_worker(db, clock, allow_private=False)
    try:
        assert await guarded.run_once() == 1
    finally:
        await guarded.stop()
    [delivery] = await deliveries(api, hook)
    [attempt] = delivery["attempts"]
    assert attempt["error"].startswith("refused: 127.0.0.1 is a loopback address")
    assert attempt["statusCode"] is None and delivery["status"] == "pending"
    assert receiver.requests() == []


async def test_a_webhook_failing_for_a_day_is_disabled(
    api: httpx.AsyncClient, ctx: ApiContext, clock: FrozenClock, db: Database
) -> None:
    with Receiver(check_time=False) as failing, Receiver(check_time=False) as watcher:
        hook = await subscribe(api, failing)
        watch = await subscribe(api, watcher, events=["webhook.disabled"])
        failing.answer(*[500] * 100)
        await new_tunnel(api, await new_agent(api))
        hourly = make_worker(db, clock, policy=RetryPolicy(delays=(3600.0,) * 40, jitter=0.0))
        try:
            start = clock.now()
            attempts = 0
            while (await api.get(f"/v1/webhooks/{hook['id']}")).json()["enabled"]:
                attempts += await hourly.run_once()
                clock.advance(hours=1)
                assert attempts <= 30
            assert attempts == 25  # the attempt 24 hours after the first failure
            shown = (await api.get(f"/v1/webhooks/{hook['id']}")).json()
            assert shown["disabledReason"] == "failing" and at(shown["failingSince"]) == start
            [disabled] = await events(ctx, "webhook.disabled")
            assert disabled.object_id == hook["id"]
            assert disabled.payload["reason"] == "failing"
            assert disabled.payload["webhook"]["id"] == hook["id"]
            assert hook["secret"] not in str(disabled.payload)
            assert await hourly.run_once() == 1  # only the watcher's message is sent now
            assert [r.document["type"] for r in watcher.requests()] == ["webhook.disabled"]
            assert watcher.requests()[0].verified
            assert len(failing.requests()) == 25
            [held] = await deliveries(api, hook)
            assert held["status"] == "pending"

            failing.script.clear()
            enabled = await api.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": True})
            assert enabled.json()["failingSince"] is None
            assert enabled.json()["disabledReason"] is None
            assert await hourly.run_once() == 1  # held messages go at once, oldest first
            [done] = await deliveries(api, hook)
            assert done["status"] == "succeeded" and len(done["attempts"]) == 26
            assert (await deliveries(api, watch))[0]["status"] == "succeeded"
        finally:
            await hourly.stop()
