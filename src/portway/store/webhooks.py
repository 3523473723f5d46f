"""Webhooks and the read side of their delivery queue, for the `/v1/webhooks` router.

The signing secret is stored as issued, because the hub must sign with it; it leaves the store
only in the create and rotate-secret responses and in the delivery worker's signatures.
The worker's side of the queue (fan-out, claiming, recording attempts) is `store.deliveries`.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from portway.domain import webhook_rules as rules
from portway.store import event_feed, seq_pages
from portway.store.errors import NoSuchRow
from portway.store.models import Webhook, WebhookAttempt, WebhookDelivery
from portway.store.pages import Page, paginate


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def redacted_url(url: str) -> str:
    """`url` without a password in its user-info, as event payloads carry it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


def snapshot(webhook: Webhook) -> dict[str, Any]:
    """The webhook as event payloads carry it: never the secret, no password in the URL."""
    return {
        "id": str(webhook.id),
        "url": redacted_url(webhook.url),
        "events": list(webhook.events),
        "description": webhook.description,
        "enabled": webhook.enabled,
        "disabledReason": webhook.disabled_reason,
        "failingSince": _iso(webhook.failing_since),
        "createdAt": _iso(webhook.created_at),
        "updatedAt": _iso(webhook.updated_at),
    }


async def create(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    url: str,
    events: list[str],
    description: str | None,
    enabled: bool,
    now: datetime,
) -> tuple[Webhook, str]:
    """Store a webhook with a fresh secret; returns it and the secret (shown once by the caller).

    The URL has already passed `domain.webhooks.check_url` and the SSRF guard. Only events
    recorded from now on are delivered to it.
    """
    secret = rules.new_secret()
    webhook = Webhook(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        url=url,
        events=events,
        description=description,
        enabled=enabled,
        disabled_reason=None,
        secret=secret,
        since_seq=await event_feed.latest_seq(session),
        failing_since=None,
        created_at=now,
        updated_at=now,
    )
    session.add(webhook)
    await session.flush()
    return webhook, secret


async def get(session: AsyncSession, workspace_id: uuid.UUID, webhook_id: uuid.UUID) -> Webhook:
    """A webhook of this workspace; `NoSuchRow` (`webhook_not_found`) for any other id."""
    found = await session.scalar(
        select(Webhook).where(Webhook.workspace_id == workspace_id, Webhook.id == webhook_id)
    )
    if found is None:
        raise NoSuchRow("webhook not found", code="webhook_not_found")
    return found


async def list_page(
    session: AsyncSession, workspace_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Page[Webhook]:
    """A page of the workspace's webhooks, newest first."""
    stmt = select(Webhook).where(Webhook.workspace_id == workspace_id)
    return await paginate(session, stmt, Webhook.created_at, Webhook.id, limit=limit, cursor=cursor)


async def update_webhook(
    session: AsyncSession,
    webhook: Webhook,
    *,
    now: datetime,
    url: str | None = None,
    events: list[str] | None = None,
    description: str | None = None,
    clear_description: bool = False,
    enabled: bool | None = None,
) -> Webhook:
    """Apply a PATCH. Re-enabling clears the failure state and makes held deliveries due now.

    Disabling holds the queue: pending deliveries wait (in order) until it is enabled again.
    """
    if url is not None:
        webhook.url = url
    if events is not None:
        webhook.events = events
    if description is not None or clear_description:
        webhook.description = description
    if enabled is True and not webhook.enabled:
        webhook.enabled, webhook.disabled_reason, webhook.failing_since = True, None, None
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == webhook.id, WebhookDelivery.status == "pending")
            .values(next_attempt_at=now)
            .execution_options(synchronize_session=False)
        )
    elif enabled is False and webhook.enabled:
        webhook.enabled, webhook.disabled_reason = False, None
    webhook.updated_at = now
    await session.flush()
    return webhook


async def delete(session: AsyncSession, webhook: Webhook) -> None:
    """Remove a webhook; its queue and attempts go with it (foreign-key cascade)."""
    await session.delete(webhook)
    await session.flush()


async def rotate_secret(session: AsyncSession, webhook: Webhook, *, now: datetime) -> str:
    """Replace the secret: every attempt from now on, retries included, is signed with it."""
    webhook.secret = rules.new_secret()
    webhook.updated_at = now
    await session.flush()
    return webhook.secret


async def enqueue(
    session: AsyncSession,
    webhook: Webhook,
    *,
    type: str,
    payload: dict[str, Any],
    occurred_at: datetime,
    now: datetime,
    event_seq: int | None = None,
) -> WebhookDelivery:
    """Queue one message behind the webhook's earlier ones, due at once.

    Called by the fan-out (`store.deliveries.fan_out`) and by `POST /v1/webhooks/{id}/test`.
    """
    delivery = WebhookDelivery(
        id=uuid.uuid4(),
        workspace_id=webhook.workspace_id,
        webhook_id=webhook.id,
        event_seq=event_seq,
        type=type,
        payload=payload,
        occurred_at=occurred_at,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    await session.flush()
    return delivery


async def enqueue_test(
    session: AsyncSession, webhook: Webhook, *, now: datetime
) -> WebhookDelivery:
    """Queue a `webhook.test` message (it ignores the webhook's event filter)."""
    payload = {
        "webhookId": str(webhook.id),
        "message": "This is a test delivery from Portway; the signature shows the secret works.",
    }
    return await enqueue(
        session, webhook, type=rules.TEST_EVENT, payload=payload, occurred_at=now, now=now
    )


async def get_delivery(
    session: AsyncSession, webhook: Webhook, delivery_id: uuid.UUID
) -> WebhookDelivery:
    found = await session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.webhook_id == webhook.id, WebhookDelivery.id == delivery_id
        )
    )
    if found is None:
        raise NoSuchRow("delivery not found", code="delivery_not_found")
    return found


async def deliveries_page(
    session: AsyncSession,
    webhook: Webhook,
    *,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> Page[WebhookDelivery]:
    """A page of the webhook's deliveries, newest first (queue order reversed)."""
    stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    return await seq_pages.paginate(session, stmt, WebhookDelivery.seq, limit=limit, cursor=cursor)


async def attempts_of(
    session: AsyncSession, delivery_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, Sequence[WebhookAttempt]]:
    """The attempts of each delivery, first to last (for the deliveries listing)."""
    found: defaultdict[uuid.UUID, list[WebhookAttempt]] = defaultdict(list)
    if delivery_ids:
        rows = await session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(delivery_ids)))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.number)
        )
        for attempt in rows.all():
            found[attempt.delivery_id].append(attempt)
    return dict(found)
