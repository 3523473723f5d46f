"""Webhooks through a whole running hub: real API, real worker, real receiver, real clock.

Retry delays are shortened through `DeliverySettings`; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from portway.domain.webhook_rules import RetryPolicy
from portway.hub.core.config import load_hub_config
from portway.hub.server import Hub
from portway.hub.webhook_delivery import DeliverySettings
from portway.store import Database, events
from portway.testing.hub import hub_flags
from portway.testing.waiting import async_wait_until
from tests.webhook_receiver import HANG, SLOW, Receiver

QUICK = DeliverySettings(
    policy=RetryPolicy(delays=(0.05, 0.1, 0.2, 0.4), jitter=0.0),
    timeout=0.5,
    poll_interval=0.05,
)


@contextlib.asynccontextmanager
async def running(
    data_dir: Path, database_url: str, settings: DeliverySettings
) -> AsyncIterator[tuple[Hub, httpx.AsyncClient]]:
    """A hub that allows private webhook URLs (the receiver is on loopback), and a client."""
    flags = hub_flags(data_dir, database_url=database_url, webhooks_allow_private="on")
    hub = Hub(load_hub_config(flags, {}), deliveries=settings)
    await hub.start()
    headers = {"Authorization": f"Bearer {hub.config.admin_key_file.read_text().strip()}"}
    try:
        async with httpx.AsyncClient(base_url=hub.api_url, headers=headers) as client:
            yield hub, client
    finally:
        await hub.stop()


async def subscribe(client: httpx.AsyncClient, receiver: Receiver, **fields: Any) -> str:
    response = await client.post("/v1/webhooks", json={"url": receiver.url, **fields})
    assert response.status_code == 201, response.text
    receiver.secret = response.json()["secret"]
    return str(response.json()["id"])


async def tunnels(client: httpx.AsyncClient, *names: str) -> None:
    agent = (await client.post("/v1/agents", json={})).json()["id"]
    for name in names:
        body = {"target": "localhost:5432", "agentId": agent, "name": name}
        assert (await client.post("/v1/tunnels", json=body)).status_code == 201


async def settled(client: httpx.AsyncClient, hook: str, count: int) -> list[dict[str, Any]]:
    """The hook's deliveries once all `count` are recorded as succeeded: the receiver sees a
    request before the hub has stored its answer."""

    async def page() -> list[dict[str, Any]] | None:
        response = await client.get(f"/v1/webhooks/{hook}/deliveries")
        items: list[dict[str, Any]] = response.json()["items"]
        return items if [d["status"] for d in items] == ["succeeded"] * count else None

    found = await async_wait_until(page, timeout=10, what=f"{count} deliveries stored as succeeded")
    assert found is not None
    return found


def names(receiver: Receiver) -> list[str]:
    return [r.document["data"]["tunnel"]["name"] for r in receiver.delivered()]


async def test_retries_after_500s_and_timeouts_in_order(tmp_path: Path, database_url: str) -> None:
    with Receiver() as receiver:
        async with running(tmp_path / "hub", database_url, QUICK) as (_hub, client):
            hook = await subscribe(client, receiver, events=["tunnel.created"])
            receiver.answer(500, SLOW, 503)
            await tunnels(client, "first", "second", "third")

            async def all_delivered() -> bool:
                return len(receiver.delivered()) == 3

            await async_wait_until(all_delivered, timeout=20, what="three deliveries")
            got = receiver.requests()
            assert all(r.verified for r in got), [r.error for r in got]
            assert [r.document["data"]["tunnel"]["name"] for r in got] == [
                "first", "first", "first", "first", "second", "third",
            ]  # fmt: skip
            assert [r.answered for r in got] == [500, SLOW, 503, 200, 200, 200]
            page = await settled(client, hook, 3)
            first = page[-1]
            assert [a["statusCode"] for a in first["attempts"]] == [500, None, 503, 200]
            assert first["attempts"][1]["error"] == "timed out after 0.5 s"
            assert first["attempts"][1]["latencyMs"] >= 500


async def test_deliveries_move_on_wake_ups_not_polls(tmp_path: Path, database_url: str) -> None:
    """With both poll intervals at a minute, only the wake-ups can move deliveries along: the
    event log moving (new events), a retry this worker scheduled coming due, and an attempt
    ending (the next delivery in the webhook's queue)."""
    lazy = dataclasses.replace(QUICK, poll_interval=60.0, idle_poll_interval=60.0)
    with Receiver() as receiver:
        async with running(tmp_path / "hub", database_url, lazy) as (_hub, client):
            await subscribe(client, receiver, events=["tunnel.created"])
            receiver.answer(500)
            await tunnels(client, "first", "second")

            async def both_delivered() -> bool:
                return len(receiver.delivered()) == 2

            await async_wait_until(both_delivered, timeout=10, what="two deliveries")
            assert [r.answered for r in receiver.requests()] == [500, 200, 200]
            assert names(receiver) == ["first", "second"]


async def test_a_restart_loses_no_pending_delivery(tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "hub"
    patient = DeliverySettings(timeout=30.0, poll_interval=0.05)
    with Receiver() as receiver:
        async with running(data_dir, database_url, patient) as (_hub, client):
            hook = await subscribe(client, receiver, events=["tunnel.created"])
            workspace = uuid.UUID((await client.get("/v1/hub")).json()["workspace"]["id"])
            receiver.answer(HANG)  # the first message is in flight when the hub stops
            await tunnels(client, "one", "two", "three")

            async def in_flight() -> bool:
                return len(receiver.requests()) == 1

            await async_wait_until(in_flight, what="the first attempt")
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 5  # the hanging request does not hold shutdown

        # Events recorded while no hub runs are delivered by the next one too.
        db = Database.open(database_url)
        try:
            async with db.session() as session:
                for name in ("four", "five"):
                    payload = {"tunnel": {"name": name}}
                    await events.append(
                        session, workspace, "tunnel.created", uuid.uuid4(), payload,
                        datetime.now(UTC),
                    )  # fmt: skip
        finally:
            await db.close()

        async with running(data_dir, database_url, QUICK) as (_hub, client):

            async def all_delivered() -> bool:
                return len(receiver.delivered()) == 5

            await async_wait_until(all_delivered, timeout=20, what="five deliveries")
            assert names(receiver) == ["one", "two", "three", "four", "five"]
            hung = receiver.requests()[0]
            delivered = receiver.delivered()
            assert delivered[0].message_id == hung.message_id  # the same message, sent again
            assert len({r.message_id for r in delivered}) == 5
            assert all(r.verified for r in delivered)
            page = await settled(client, hook, 5)
            # The attempt cut short by the stop was not counted as a failure.
            assert [len(d["attempts"]) for d in page] == [1] * 5
