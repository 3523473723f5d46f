"""The event vocabulary: one event per change, read by webhooks, the live feed and the audit log.

Payloads are JSON objects keyed like the API (camelCase). Each carries a snapshot of the object
under its kind (`{"tunnel": {...}}`, `{"share": {...}}`, `{"connection": {...}}`) plus, for some
types, what changed:

* `tunnel.updated`: `changed`, the list of API fields that changed (`name`, `metadata`).
* `tunnel.status_changed`: `previousStatus`; the new status and reason are in the snapshot.
* `agent.connected`, `agent.disconnected`: written by the data plane with the agent's id and
  name (these carry no snapshot).
* `tunnel.deleted`, `share.revoked`, `connection.deleted`: `reason`, one of `deleted`/`revoked`
  (a user asked), `tunnel_deleted` (went with its tunnel), `agent_deleted`, `expired`.
* `tunnel.expired`, `share.expired`: written by the hub's expiry loop when `expiresAt` passes.
  An expired tunnel is then deleted (`tunnel.deleted` with reason `expired` follows); an expired
  share stays listed with status `expired`.
* `webhook.disabled`: a webhook failed continuously for a day and was switched off; carries
  `{"webhook": {...}, "reason": ..., "failingSince": ...}` (never the signing secret).

Secrets never appear in a payload (share tokens, agent tokens).
"""

from __future__ import annotations

from typing import Final

TUNNEL_CREATED: Final = "tunnel.created"
TUNNEL_UPDATED: Final = "tunnel.updated"
TUNNEL_STATUS_CHANGED: Final = "tunnel.status_changed"
TUNNEL_DELETED: Final = "tunnel.deleted"
TUNNEL_EXPIRED: Final = "tunnel.expired"
SHARE_CREATED: Final = "share.created"
SHARE_REVOKED: Final = "share.revoked"
SHARE_EXPIRED: Final = "share.expired"
CONNECTION_CREATED: Final = "connection.created"
CONNECTION_DELETED: Final = "connection.deleted"
AGENT_CONNECTED: Final = "agent.connected"
AGENT_DISCONNECTED: Final = "agent.disconnected"
WEBHOOK_DISABLED: Final = "webhook.disabled"

EVENT_TYPES: Final = (
    TUNNEL_CREATED,
    TUNNEL_UPDATED,
    TUNNEL_STATUS_CHANGED,
    TUNNEL_DELETED,
    TUNNEL_EXPIRED,
    SHARE_CREATED,
    SHARE_REVOKED,
    SHARE_EXPIRED,
    CONNECTION_CREATED,
    CONNECTION_DELETED,
    AGENT_CONNECTED,
    AGENT_DISCONNECTED,
    WEBHOOK_DISABLED,
)

REASON_DELETED: Final = "deleted"
REASON_REVOKED: Final = "revoked"
REASON_TUNNEL_DELETED: Final = "tunnel_deleted"
REASON_AGENT_DELETED: Final = "agent_deleted"
REASON_EXPIRED: Final = "expired"
