"""The delivery worker's side of the webhook queue: fan-out, claiming heads, recording attempts.

Called only by `portway.hub.webhook_delivery.DeliveryWorker`, each function in its own transaction:

1. `fan_out` turns new `events` rows into deliveries for the matching enabled webhooks and
   moves the durable cursor (`event_cursors`, row `webhooks`) in the same transaction, so a
   restart neither loses nor repeats an event.
2. `due` lists the head (lowest `seq` still pending) of each enabled webhook whose next attempt
   is due; only heads are ever sent, which keeps every webhook's messages in order.
3. `claim` leases a head to one worker; `record` stores the outcome, schedules the retry or
   settles the delivery, and disables a webhook that has been failing for too long.
4. `release` drops the leases of a worker that stops with attempts in flight.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from portway.domain import event_kinds as ev
from portway.domain import webhook_rules as rules
from portway.store import event_feed, events, webhooks
from portway.store.event_feed import EventTail
from portway.store.models import EventCursor, Webhook, WebhookAttempt, WebhookDelivery

FANOUT_CURSOR = "webhooks"
MAX_ERROR = 500


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one HTTP attempt gave: a 2xx (`ok`), another status, or an error without one."""

    ok: bool
    status_code: int | None
    latency_ms: int | None
    error: str | None


async def fan_out(session: AsyncSession, tail: EventTail, *, now: datetime) -> int:
    """Queue deliveries for the events after the durable cursor; returns how many were queued.

    Takes the cursor row's lock first (a no-op UPDATE), so concurrent hub nodes take turns and
    SQLite holds the write lock before reading; when no event is newer than the cursor it
    writes nothing at all. `tail` keeps gap timers between calls; its position is reset from
    the store every time.
    """
    cursor = select(EventCursor.seq).where(EventCursor.name == FANOUT_CURSOR)
    seen = await session.scalar(cursor)
    if seen is not None and await event_feed.latest_seq(session) <= seen:
        return 0
    locked: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]
        update(EventCursor).where(EventCursor.name == FANOUT_CURSOR).values(seq=EventCursor.seq)
    )
    if locked.rowcount == 0:
        # Created by migration 0003; recreated here should someone have removed it.
        session.add(EventCursor(name=FANOUT_CURSOR, seq=await event_feed.latest_seq(session)))
        return 0
    tail.position = int(await session.scalar(cursor) or 0)
    found = await tail.read(session)
    queued = 0
    if found:
        workspaces = {event.workspace_id for event in found}
        hooks: defaultdict[uuid.UUID, list[Webhook]] = defaultdict(list)
        for hook in await session.scalars(
            select(Webhook)
            .where(Webhook.enabled.is_(True), Webhook.workspace_id.in_(workspaces))
            .order_by(Webhook.created_at)
        ):
            hooks[hook.workspace_id].append(hook)
        for event in found:
            for hook in hooks[event.workspace_id]:
                if hook.since_seq < event.seq and rules.subscribed(hook.events, event.type):
                    await webhooks.enqueue(
                        session, hook, type=event.type, payload=event.payload,
                        occurred_at=event.created_at, now=now, event_seq=event.seq,
                    )  # fmt: skip
                    queued += 1
    await session.execute(
        update(EventCursor).where(EventCursor.name == FANOUT_CURSOR).values(seq=tail.position)
    )
    return queued


async def due(
    session: AsyncSession, *, now: datetime, limit: int, skip_webhooks: Collection[uuid.UUID]
) -> Sequence[tuple[WebhookDelivery, Webhook]]:
    """Heads of enabled webhooks' queues whose attempt is due and that no worker holds."""
    earlier = aliased(WebhookDelivery)
    head = (
        select(func.min(earlier.seq))
        .where(earlier.webhook_id == WebhookDelivery.webhook_id, earlier.status == "pending")
        .scalar_subquery()
    )
    stmt = (
        select(WebhookDelivery, Webhook)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(
            Webhook.enabled.is_(True),
            WebhookDelivery.status == "pending",
            WebhookDelivery.seq == head,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until <= now),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.seq)
        .limit(limit)
    )
    if skip_webhooks:
        stmt = stmt.where(WebhookDelivery.webhook_id.not_in(list(skip_webhooks)))
    rows = (await session.execute(stmt)).all()
    return [(row[0], row[1]) for row in rows]


async def claim(
    session: AsyncSession, delivery_id: uuid.UUID, *, owner: str, now: datetime, lease: timedelta
) -> bool:
    """Lease a pending delivery to `owner` until `now + lease`; False if another worker has it."""
    result: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == "pending",
            or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until <= now),
        )
        .values(locked_by=owner, locked_until=now + lease)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def record(
    session: AsyncSession,
    delivery_id: uuid.UUID,
    outcome: Attempt,
    *,
    owner: str,
    now: datetime,
    policy: rules.RetryPolicy,
    disable_after: timedelta,
) -> WebhookDelivery | None:
    """Store one attempt and decide what comes next; None if the delivery is no longer ours.

    A 2xx settles it as `succeeded` and ends the webhook's failing streak. Anything else
    schedules the next attempt from `policy`, or settles it as `failed` when none is left; a
    webhook failing for `disable_after` is disabled and `webhook.disabled` is recorded.
    """
    delivery = await session.scalar(
        select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update()
    )
    if delivery is None or delivery.locked_by != owner or delivery.status != "pending":
        return None
    webhook = await session.get(Webhook, delivery.webhook_id, with_for_update=True)
    if webhook is None:
        return None
    delivery.attempts += 1
    session.add(
        WebhookAttempt(
            id=uuid.uuid4(), workspace_id=delivery.workspace_id, delivery_id=delivery.id,
            number=delivery.attempts, at=now, status_code=outcome.status_code,
            latency_ms=outcome.latency_ms,
            error=None if outcome.error is None else outcome.error[:MAX_ERROR],
        )
    )  # fmt: skip
    delivery.locked_by, delivery.locked_until = None, None
    if outcome.ok:
        delivery.status, delivery.completed_at, delivery.next_attempt_at = "succeeded", now, None
        webhook.failing_since = None
        return delivery
    delay = policy.delay_after(delivery.attempts)
    if delay is None:
        delivery.status, delivery.completed_at, delivery.next_attempt_at = "failed", now, None
    else:
        delivery.next_attempt_at = now + timedelta(seconds=delay)
    if webhook.failing_since is None:
        webhook.failing_since = now
    if webhook.enabled and now - webhook.failing_since >= disable_after:
        await _disable(session, webhook, now=now)
    return delivery


async def _disable(session: AsyncSession, webhook: Webhook, *, now: datetime) -> None:
    webhook.enabled, webhook.disabled_reason, webhook.updated_at = False, rules.REASON_FAILING, now
    failing_since = webhook.failing_since.isoformat() if webhook.failing_since else None
    await events.append(
        session,
        webhook.workspace_id,
        ev.WEBHOOK_DISABLED,
        webhook.id,
        {
            "webhook": webhooks.snapshot(webhook),
            "reason": rules.REASON_FAILING,
            "failingSince": failing_since,
        },
        now,
    )


async def release(session: AsyncSession, *, owner: str) -> None:
    """Drop every lease `owner` holds (a stopping worker's cancelled attempts go back in line)."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.locked_by == owner)
        .values(locked_by=None, locked_until=None)
        .execution_options(synchronize_session=False)
    )
