"""`/v1/webhooks`: HTTP endpoints that receive the workspace's events, signed.

The signing secret (`whsec_…`) appears in the create and rotate-secret responses only. URLs
that are, or resolve to, loopback/private/link-local/... addresses are refused with a 422
naming `url` unless the hub runs with `--webhooks-allow-private`; the delivery worker checks
again before every attempt. Deliveries are made by `portway.hub.webhook_delivery`.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from portway.api.auth import Auth, Ctx
from portway.api.context import ApiContext
from portway.api.ids import parse_id
from portway.api.problems import responses
from portway.api.schemas import Limit, Page
from portway.api.webhook_schemas import (
    WEBHOOK_CREATE_EXAMPLES,
    WEBHOOK_UPDATE_EXAMPLES,
    AttemptOut,
    DeliveryOut,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookSecret,
    WebhookUpdate,
)
from portway.domain import webhook_rules as rules
from portway.errors import Conflict
from portway.store import webhooks
from portway.store.models import Webhook, WebhookAttempt, WebhookDelivery

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def webhook_out(webhook: Webhook) -> WebhookOut:
    return WebhookOut(
        id=webhook.id,
        url=webhook.url,
        events=webhook.events,
        description=webhook.description,
        enabled=webhook.enabled,
        disabled_reason=webhook.disabled_reason,
        failing_since=webhook.failing_since,
        secret_prefix=rules.secret_prefix(webhook.secret),
        created_at=webhook.created_at,
        updated_at=webhook.updated_at,
    )


def delivery_out(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        webhook_id=delivery.webhook_id,
        event_type=delivery.type,
        event_seq=delivery.event_seq,
        status=delivery.status,
        attempts=[
            AttemptOut(
                number=a.number,
                at=a.at,
                status_code=a.status_code,
                latency_ms=a.latency_ms,
                error=a.error,
            )
            for a in attempts
        ],
        next_attempt_at=delivery.next_attempt_at,
        created_at=delivery.created_at,
        completed_at=delivery.completed_at,
    )


async def _find(session: AsyncSession, workspace_id: uuid.UUID, webhook_id: str) -> Webhook:
    return await webhooks.get(session, workspace_id, parse_id(webhook_id, "webhook"))


async def _allowed_url(url: str, ctx: ApiContext) -> str:
    """`url` if the SSRF guard lets it through now; its invalid-input error (a 422 naming
    `url`) otherwise."""
    await ctx.url_guard.check(url)
    return url


@router.post("", status_code=201, response_model=WebhookCreated, responses=responses())
async def create_webhook(
    body: Annotated[WebhookCreate, Body(openapi_examples=WEBHOOK_CREATE_EXAMPLES)],
    auth: Auth,
    ctx: Ctx,
) -> WebhookCreated:
    """Subscribe a URL to events of this workspace (`["*"]`, the default, for all).

    `secret` appears in this response only: verify each delivery's `webhook-signature` with it
    (Standard Webhooks). Only events recorded from now on are delivered. Errors: 422
    `url_not_allowed` for a private address, `url_unresolvable` for a host that does not
    resolve.
    """
    url = await _allowed_url(body.url, ctx)
    async with ctx.db.session() as session:
        webhook, secret = await webhooks.create(
            session,
            auth.workspace_id,
            url=url,
            events=body.events,
            description=body.description,
            enabled=body.enabled,
            now=ctx.clock.now(),
        )
        return WebhookCreated(**webhook_out(webhook).model_dump(), secret=secret)


@router.get("", response_model=Page[WebhookOut], responses=responses())
async def list_webhooks(
    auth: Auth, ctx: Ctx, limit: Limit = 50, cursor: str | None = None
) -> Page[WebhookOut]:
    """The workspace's webhooks, newest first (never their secrets)."""
    async with ctx.db.session() as session:
        page = await webhooks.list_page(session, auth.workspace_id, limit=limit, cursor=cursor)
    return Page[WebhookOut](
        items=[webhook_out(w) for w in page.items], next_cursor=page.next_cursor
    )


@router.get("/{webhook_id}", response_model=WebhookOut, responses=responses())
async def get_webhook(webhook_id: str, auth: Auth, ctx: Ctx) -> WebhookOut:
    """One webhook; its secret is never shown again, only `secretPrefix`."""
    async with ctx.db.session() as session:
        return webhook_out(await _find(session, auth.workspace_id, webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookOut, responses=responses())
async def update_webhook(
    webhook_id: str,
    body: Annotated[WebhookUpdate, Body(openapi_examples=WEBHOOK_UPDATE_EXAMPLES)],
    auth: Auth,
    ctx: Ctx,
) -> WebhookOut:
    """Change the URL, subscription or description (`null` clears it), or enable/disable.

    Disabling holds queued deliveries; enabling sends them, in order, from the oldest.
    """
    url = None if body.url is None else await _allowed_url(body.url, ctx)
    async with ctx.db.session() as session:
        webhook = await _find(session, auth.workspace_id, webhook_id)
        await webhooks.update_webhook(
            session,
            webhook,
            now=ctx.clock.now(),
            url=url,
            events=body.events,
            description=body.description,
            clear_description="description" in body.model_fields_set and body.description is None,
            enabled=body.enabled,
        )
        return webhook_out(webhook)


@router.delete("/{webhook_id}", status_code=204, responses=responses())
async def delete_webhook(webhook_id: str, auth: Auth, ctx: Ctx) -> Response:
    """Delete a webhook with its queued and past deliveries."""
    async with ctx.db.session() as session:
        await webhooks.delete(session, await _find(session, auth.workspace_id, webhook_id))
    return Response(status_code=204)


@router.post("/{webhook_id}/rotate-secret", response_model=WebhookSecret, responses=responses())
async def rotate_webhook_secret(webhook_id: str, auth: Auth, ctx: Ctx) -> WebhookSecret:
    """Issue a new signing secret; every attempt from now on, retries too, is signed with it."""
    async with ctx.db.session() as session:
        webhook = await _find(session, auth.workspace_id, webhook_id)
        secret = await webhooks.rotate_secret(session, webhook, now=ctx.clock.now())
        return WebhookSecret(id=webhook.id, secret=secret)


@router.post(
    "/{webhook_id}/test", status_code=202, response_model=DeliveryOut, responses=responses(409)
)
async def test_webhook(webhook_id: str, auth: Auth, ctx: Ctx) -> DeliveryOut:
    """Queue a `webhook.test` message (whatever the subscription); returns its delivery.

    It is sent after any message already queued for this webhook; follow it in
    `GET /v1/webhooks/{id}/deliveries`. Error: 409 `webhook_disabled`.
    """
    async with ctx.db.session() as session:
        webhook = await _find(session, auth.workspace_id, webhook_id)
        if not webhook.enabled:
            raise Conflict(
                "this webhook is disabled; enable it first (PATCH enabled=true)",
                code="webhook_disabled",
            )
        delivery = await webhooks.enqueue_test(session, webhook, now=ctx.clock.now())
        return delivery_out(delivery, [])


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryOut], responses=responses())
async def list_deliveries(
    *,
    webhook_id: str,
    auth: Auth,
    ctx: Ctx,
    status: Annotated[
        rules.DeliveryStatus | None, Query(description="Only deliveries in this state")
    ] = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Page[DeliveryOut]:
    """The webhook's deliveries, newest first, each with its attempts (status, latency, error)."""
    async with ctx.db.session() as session:
        webhook = await _find(session, auth.workspace_id, webhook_id)
        page = await webhooks.deliveries_page(
            session, webhook, status=status, limit=limit, cursor=cursor
        )
        attempts = await webhooks.attempts_of(session, [d.id for d in page.items])
    items = [delivery_out(d, list(attempts.get(d.id, []))) for d in page.items]
    return Page[DeliveryOut](items=items, next_cursor=page.next_cursor)
