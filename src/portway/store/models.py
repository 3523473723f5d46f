"""ORM tables. Every row belongs to a workspace; deleting a workspace deletes what it owns."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from portway.store.types import UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _workspace_fk() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False)


def _cascade_fk(target: str) -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey(target, ondelete="CASCADE"), nullable=False)


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
SequenceNumber = BigInteger().with_variant(Integer(), "sqlite")


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # The first workspace administers the instance: its keys may create other workspaces.
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_workspace_created", "workspace_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = _workspace_fk()
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        Index("ix_agents_workspace_created", "workspace_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = _workspace_fk()
    name: Mapped[str] = mapped_column(String(100))
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_rotated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Tunnel(Base):
    """A service an agent exposes. `status` is the state machine of ARCHITECTURE.md §3."""

    __tablename__ = "tunnels"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        Index("ix_tunnels_workspace_created", "workspace_id", "created_at"),
        Index("ix_tunnels_agent_id", "agent_id"),
        Index("ix_tunnels_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = _workspace_fk()
    agent_id: Mapped[uuid.UUID] = _cascade_fk("agents.id")
    name: Mapped[str] = mapped_column(String(100))
    target_host: Mapped[str] = mapped_column(String(253))
    target_port: Mapped[int] = mapped_column(Integer)
    requested_protocol: Mapped[str] = mapped_column(String(8))
    protocol: Mapped[str] = mapped_column(String(8))
    # What the agent's handshake probe found (postgres, redis, http, ...); null until it runs.
    detected_protocol: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # The rest of that probe: version, TLS certificate, whether it contradicts `protocol`.
    probe: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    # Hub-wide: it is the first label of the public host name `<slug>.<public-domain>`.
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    # Hub-wide: a port on the hub can carry one tunnel only.
    hub_port: Mapped[int | None] = mapped_column(Integer, nullable=True, unique=True)
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    # `metadata` is reserved on declarative classes, hence the attribute name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Written in batches by the data plane (`store.tunnels.add_stats`), never per byte.
    active_connections: Mapped[int] = mapped_column(Integer, default=0)
    total_connections: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0)
    last_connection_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # UDP tunnels: datagrams carried towards the target, back to visitors, and dropped.
    datagrams_in: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    datagrams_out: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    datagrams_dropped: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class Diagnostic(Base):
    """One `POST /v1/tunnels/{id}/diagnostics` run; the last 50 of each tunnel are kept."""

    __tablename__ = "diagnostics"
    __table_args__ = (Index("ix_diagnostics_tunnel_created", "tunnel_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = _workspace_fk()
    tunnel_id: Mapped[uuid.UUID] = _cascade_fk("tunnels.id")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ok: Mapped[bool] = mapped_column(Boolean)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    detected: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Connection(Base):
    """A tunnel brought to an agent's `localhost:<local_port>` (the API twin of `reach`)."""

    __tablename__ = "connections"
    __table_args__ = (
        # One agent cannot listen twice on the same local port.
        UniqueConstraint("agent_id", "local_port"),
        Index("ix_connections_tunnel_created", "tunnel_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = _workspace_fk()
    tunnel_id: Mapped[uuid.UUID] = _cascade_fk("tunnels.id")
    agent_id: Mapped[uuid.UUID] = _cascade_fk("agents.id")
    local_host: Mapped[str] = mapped_column(String(64))
    local_port: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Share(Base):
    """A link to a tunnel for outsiders, with an expiry and a policy the edge enforces."""

    __tablename__ = "shares"
    __table_args__ = (
        Index("ix_shares_workspace_created", "workspace_id", "created_at"),
        Index("ix_shares_tunnel_created", "tunnel_id", "created_at"),
        Index("ix_shares_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = _workspace_fk()
    tunnel_id: Mapped[uuid.UUID] = _cascade_fk("tunnels.id")
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(500), nullable=True)
    token_prefix: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Null lists mean "no restriction"; the API never stores an empty list.
    allowed_methods: Mapped[list[str] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True
    )
    allowed_paths: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    rate_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    access_count: Mapped[int] = mapped_column(BigInteger, default=0)
    last_accessed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the hub's expiry loop recorded `share.expired` (once); null before that.
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ShareAccessLog(Base):
    """One request (or `join`) made with a share, allowed or denied; written by the edge."""

    __tablename__ = "share_access_logs"
    __table_args__ = (Index("ix_share_access_logs_share_created", "share_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = _workspace_fk()
    share_id: Mapped[uuid.UUID] = _cascade_fk("shares.id")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    remote_addr: Mapped[str] = mapped_column(String(64))
    method: Mapped[str | None] = mapped_column(String(16), nullable=True)
    path: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    allowed: Mapped[bool] = mapped_column(Boolean)
    # Why a request was denied (method_not_allowed, path_not_allowed, rate_limited, ...).
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Request and response bytes and time to the end of the response; null when refused.
    bytes_in: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bytes_out: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(256), nullable=True)


class Event(Base):
    """One change; see `portway.domain.event_kinds` for types and payloads.

    `seq` grows with every insert. On PostgreSQL a transaction holding a lower `seq` can commit
    after one holding a higher `seq`, so a reader that resumes "after seq N" must allow for
    late arrivals (for example by re-reading a short window behind its position).
    """

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_workspace_seq", "workspace_id", "seq"),)

    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = _workspace_fk()
    type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Webhook(Base):
    """An HTTP endpoint that receives the workspace's events, signed with `secret`.

    The secret is kept as issued (the hub must sign with it), never listed or logged.
    """

    __tablename__ = "webhooks"
    __table_args__ = (Index("ix_webhooks_workspace_created", "workspace_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = _workspace_fk()
    url: Mapped[str] = mapped_column(String(2048))
    # Event types, or ["*"] for all of them.
    events: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(500), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why the hub switched it off (`failing`); null when enabled or disabled by a user.
    disabled_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    secret: Mapped[str] = mapped_column(String(100))
    # Only events with a greater `seq` are delivered: none from before the webhook existed.
    since_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    # Start of the current run of failed attempts; null after a success.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One message for one webhook: the durable queue the delivery worker drains in `seq` order.

    `status` goes `pending` -> `succeeded` or `failed` (retries exhausted). A worker holds a
    delivery while it sends (`locked_by` until `locked_until`) so hub nodes never send it twice
    at once.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_seq"),
        Index("ix_webhook_deliveries_webhook_status_seq", "webhook_id", "status", "seq"),
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
    )

    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = _workspace_fk()
    webhook_id: Mapped[uuid.UUID] = _cascade_fk("webhooks.id")
    # The event delivered; null for a `webhook.test` message.
    event_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    locked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WebhookAttempt(Base):
    """One HTTP request of a delivery: its answer (or why there was none) and how long it took."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery_number", "delivery_id", "number"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = _workspace_fk()
    delivery_id: Mapped[uuid.UUID] = _cascade_fk("webhook_deliveries.id")
    number: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)


class EventCursor(Base):
    """How far a hub-wide reader of `events` has durably got (the webhook fan-out: `webhooks`)."""

    __tablename__ = "event_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)


class AuditEntry(Base):
    """One mutating API call: who (API key), what (method, path, object), from where, outcome."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_workspace_seq", "workspace_id", "seq"),)

    # Listing order: calls within the same instant stay in the order they were recorded.
    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = _workspace_fk()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # `api_key` today; agents authenticate on the agent port and make no API calls yet.
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(2048))
    # The route template (`/v1/tunnels/{tunnel_ref}`); null for an unknown path.
    route: Mapped[str | None] = mapped_column(String(200), nullable=True)
    object_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    client_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status_code: Mapped[int] = mapped_column(Integer)
