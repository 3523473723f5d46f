"""Webhook rules with no I/O: secrets, Standard Webhooks signing, subscriptions, retry schedule.

Deliveries follow the Standard Webhooks specification (https://www.standardwebhooks.com/):
headers `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256>`
over ``f"{id}.{timestamp}.{body}"``, keyed with the base64-decoded part of `whsec_<base64>`.
The API validates and stores; the hub's delivery worker (`portway.hub.webhook_delivery`) signs and
schedules with these functions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, get_args
from urllib.parse import urlsplit

from portway.domain.event_kinds import EVENT_TYPES
from portway.errors import InvalidInput

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_BYTES: Final = 32
VISIBLE_CHARS: Final = 8
ALL_EVENTS: Final = "*"
TEST_EVENT: Final = "webhook.test"
MAX_URL_LENGTH: Final = 2048
MAX_DESCRIPTION: Final = 500

DeliveryStatus = Literal["pending", "succeeded", "failed"]
DELIVERY_STATUSES: Final = get_args(DeliveryStatus)

# After the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h -- eight attempts over
# about 27 hours (the schedule Svix popularised), each delay with +-20 % jitter.
DEFAULT_RETRY_DELAYS: Final = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
DEFAULT_JITTER: Final = 0.2
# A webhook whose attempts have all failed for this long is disabled.
DISABLE_AFTER: Final = timedelta(days=1)
# What a `disabledReason` says when the hub (not a user) switched a webhook off.
REASON_FAILING: Final = "failing"


class UrlError(InvalidInput):
    """A webhook URL that cannot be used; the message is meant for users.

    Raised by `check_url`, which the webhooks API's body validator runs (a 422 naming `url`).
    """

    code = "invalid_url"


def new_secret() -> str:
    """A fresh signing secret, `whsec_` + standard base64 of 32 random bytes (shown once)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret: the base64-decoded part after the prefix."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def secret_prefix(secret: str) -> str:
    """What listings may show of a secret: enough to tell two apart, far too little to use."""
    return secret[: len(SECRET_PREFIX) + VISIBLE_CHARS]


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header value for one attempt of one message."""
    signed = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as the `timestamp` of a message body."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def message_body(event_type: str, occurred_at: datetime, data: dict[str, Any]) -> str:
    """The JSON body `{type, timestamp, data}`; deterministic, so every retry sends the same."""
    document = {"type": event_type, "timestamp": iso(occurred_at), "data": data}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def headers(secret: str, message_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def check_url(value: str) -> str:
    """Validate a webhook URL's shape (the address check is `portway.hub.egress`)."""
    value = value.strip()
    if len(value) > MAX_URL_LENGTH:
        raise UrlError(f"must be at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise UrlError("must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise UrlError(f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UrlError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise UrlError("must name a host")
    if port == 0:
        raise UrlError("port 0 is not a port")
    if parts.fragment:
        raise UrlError("must not have a #fragment")
    return value


def normalise_events(values: Iterable[str]) -> list[str]:
    """Validate a subscription: known event types, or `["*"]` for every type.

    Keeps the caller's order and drops duplicates; `*` anywhere means everything.
    """
    out: list[str] = []
    for value in values:
        if value == ALL_EVENTS:
            return [ALL_EVENTS]
        if value not in EVENT_TYPES:
            raise ValueError(f"{value!r} is not an event type; use '*' or one of the documented")
        if value not in out:
            out.append(value)
    if not out:
        raise ValueError("list at least one event type, or '*' for all")
    return out


def subscribed(events: Sequence[str], event_type: str) -> bool:
    """Whether a webhook subscribed to `events` receives `event_type`."""
    return ALL_EVENTS in events or event_type in events


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a failed delivery again. `delays[i]` follows failed attempt `i + 1`.

    The number of attempts is ``len(delays) + 1``; tests pass short delays and no jitter.
    """

    delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    jitter: float = DEFAULT_JITTER
    rng: random.Random = field(default_factory=random.Random, compare=False)

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1

    def delay_after(self, attempts: int) -> float | None:
        """Seconds to wait after `attempts` failed attempts, or None: failed for good."""
        if attempts < 1 or attempts > len(self.delays):
            return None
        base = self.delays[attempts - 1]
        if not self.jitter:
            return base
        return base * self.rng.uniform(1 - self.jitter, 1 + self.jitter)
