"""Request and response bodies of `/v1/webhooks`, `/v1/events` and `/v1/audit-log`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StrictBool

from portway.api.schemas import Model
from portway.domain import webhook_rules as rules
from portway.domain.event_kinds import EVENT_TYPES
from portway.domain.share_rules import check_description

EXAMPLE_WEBHOOK_ID = "5b0c8d1e-2f3a-4b5c-8d7e-6f5a4b3c2d1e"
EXAMPLE_TIME = "2026-01-01T12:00:00Z"


def _event_type(value: str) -> str:
    if value not in EVENT_TYPES:
        raise ValueError(f"{value!r} is not an event type")
    return value


WebhookUrl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=rules.MAX_URL_LENGTH,
        examples=["https://ci.example.com/hooks/portway"],
        json_schema_extra={"format": "uri"},
        description="http:// or https://; private addresses are refused unless the hub allows",
    ),
    AfterValidator(rules.check_url),
]

Subscription = Annotated[
    list[Annotated[str, Field(json_schema_extra={"enum": [rules.ALL_EVENTS, *EVENT_TYPES]})]],
    Field(
        min_length=1,
        max_length=len(EVENT_TYPES) + 1,
        description='Event types to receive, or `["*"]` for all of them',
        examples=[["tunnel.created", "tunnel.deleted"], ["*"]],
    ),
    AfterValidator(rules.normalise_events),
]

Description = Annotated[
    str, Field(max_length=rules.MAX_DESCRIPTION), AfterValidator(check_description)
]

EventType = Annotated[
    str, Field(json_schema_extra={"enum": list(EVENT_TYPES)}), AfterValidator(_event_type)
]


class WebhookCreate(Model):
    url: WebhookUrl
    events: Subscription = Field(default_factory=lambda: [rules.ALL_EVENTS])
    description: Description | None = None
    enabled: StrictBool = True


class WebhookUpdate(Model):
    url: WebhookUrl | None = None
    events: Subscription | None = None
    description: Description | None = None
    enabled: StrictBool | None = None


class WebhookOut(Model):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None = Field(
        description="`failing` when the hub disabled it after a day of failed attempts"
    )
    failing_since: datetime | None = Field(
        description="Start of the current run of failed attempts; null after a success"
    )
    secret_prefix: str = Field(description="The start of the signing secret, to tell it apart")
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="`whsec_…`: verify signatures with it; shown only here")


class WebhookSecret(Model):
    id: uuid.UUID
    secret: str = Field(description="The new `whsec_…` secret; shown only here")


class AttemptOut(Model):
    number: int
    at: datetime
    status_code: int | None = Field(description="The receiver's HTTP status; null if none")
    latency_ms: int | None
    error: str | None = Field(description="Why it failed: status, timeout, refused address")


class DeliveryOut(Model):
    id: uuid.UUID = Field(description="Sent as `webhook-id`; the same on every retry")
    webhook_id: uuid.UUID
    event_type: str
    event_seq: int | None = Field(description="The event's `seq`; null for `webhook.test`")
    status: rules.DeliveryStatus
    attempts: list[AttemptOut]
    next_attempt_at: datetime | None
    created_at: datetime
    completed_at: datetime | None


class EventOut(Model):
    seq: int = Field(description="Position in the log; the SSE `id`, and `after` for paging")
    id: uuid.UUID
    type: str
    object_id: str
    created_at: datetime
    data: dict[str, Any]


class AuditEntryOut(Model):
    id: uuid.UUID
    at: datetime
    actor_type: str = Field(description="`api_key`")
    actor_id: str = Field(description="The id of the API key that made the call")
    method: str
    path: str
    route: str | None = Field(description="The route template, e.g. `/v1/tunnels/{tunnel_ref}`")
    object_id: str | None = Field(description="The object acted on, where known")
    client_address: str | None
    status_code: int


WEBHOOK_CREATE_EXAMPLES: dict[str, Any] = {
    "tunnel lifecycle": {
        "summary": "Tunnel creation and deletion",
        "value": {
            "url": "https://ci.example.com/hooks/portway",
            "events": ["tunnel.created", "tunnel.deleted", "tunnel.expired"],
            "description": "CI bookkeeping",
        },
    },
    "everything": {"summary": "Every event", "value": {"url": "https://example.com/hook"}},
}

WEBHOOK_UPDATE_EXAMPLES: dict[str, Any] = {
    "enable": {"summary": "Enable again after it was disabled", "value": {"enabled": True}},
    "events": {"summary": "Change the subscription", "value": {"events": ["*"]}},
}
