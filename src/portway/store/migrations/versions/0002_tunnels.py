"""Tunnels, connections, shares, share access logs and events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from portway.store.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    target_table = target.split(".", maxsplit=1)[0]
    return sa.ForeignKeyConstraint(
        [column], [target], name=f"fk_{table}_{column}_{target_table}", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "tunnels",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("target_host", sa.String(253), nullable=False),
        sa.Column("target_port", sa.Integer(), nullable=False),
        sa.Column("requested_protocol", sa.String(8), nullable=False),
        sa.Column("protocol", sa.String(8), nullable=False),
        sa.Column("detected_protocol", sa.String(16), nullable=True),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("slug", sa.String(63), nullable=False),
        sa.Column("hub_port", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.String(500), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("active_connections", sa.Integer(), nullable=False),
        sa.Column("total_connections", sa.BigInteger(), nullable=False),
        sa.Column("bytes_in", sa.BigInteger(), nullable=False),
        sa.Column("bytes_out", sa.BigInteger(), nullable=False),
        sa.Column("last_connection_at", UTCDateTime(), nullable=True),
        _fk("tunnels", "workspace_id", "workspaces.id"),
        _fk("tunnels", "agent_id", "agents.id"),
        sa.PrimaryKeyConstraint("id", name="pk_tunnels"),
        sa.UniqueConstraint("workspace_id", "name", name="uq_tunnels_workspace_id_name"),
        sa.UniqueConstraint("slug", name="uq_tunnels_slug"),
        sa.UniqueConstraint("hub_port", name="uq_tunnels_hub_port"),
    )
    op.create_index("ix_tunnels_workspace_created", "tunnels", ["workspace_id", "created_at"])
    op.create_index("ix_tunnels_agent_id", "tunnels", ["agent_id"])
    op.create_index("ix_tunnels_expires_at", "tunnels", ["expires_at"])

    op.create_table(
        "connections",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("tunnel_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("local_host", sa.String(64), nullable=False),
        sa.Column("local_port", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.String(500), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _fk("connections", "workspace_id", "workspaces.id"),
        _fk("connections", "tunnel_id", "tunnels.id"),
        _fk("connections", "agent_id", "agents.id"),
        sa.PrimaryKeyConstraint("id", name="pk_connections"),
        sa.UniqueConstraint("agent_id", "local_port", name="uq_connections_agent_id_local_port"),
    )
    op.create_index("ix_connections_tunnel_created", "connections", ["tunnel_id", "created_at"])

    op.create_table(
        "shares",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("tunnel_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("token_prefix", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("allowed_methods", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("allowed_paths", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("rate_limit", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("access_count", sa.BigInteger(), nullable=False),
        sa.Column("last_accessed_at", UTCDateTime(), nullable=True),
        _fk("shares", "workspace_id", "workspaces.id"),
        _fk("shares", "tunnel_id", "tunnels.id"),
        sa.PrimaryKeyConstraint("id", name="pk_shares"),
        sa.UniqueConstraint("token_hash", name="uq_shares_token_hash"),
    )
    op.create_index("ix_shares_workspace_created", "shares", ["workspace_id", "created_at"])
    op.create_index("ix_shares_tunnel_created", "shares", ["tunnel_id", "created_at"])

    op.create_table(
        "share_access_logs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("share_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("remote_addr", sa.String(64), nullable=False),
        sa.Column("method", sa.String(16), nullable=True),
        sa.Column("path", sa.String(2048), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(256), nullable=True),
        _fk("share_access_logs", "workspace_id", "workspaces.id"),
        _fk("share_access_logs", "share_id", "shares.id"),
        sa.PrimaryKeyConstraint("id", name="pk_share_access_logs"),
    )
    op.create_index(
        "ix_share_access_logs_share_created", "share_access_logs", ["share_id", "created_at"]
    )

    op.create_table(
        "events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        _fk("events", "workspace_id", "workspaces.id"),
        sa.PrimaryKeyConstraint("seq", name="pk_events"),
        sa.UniqueConstraint("id", name="uq_events_id"),
    )
    op.create_index("ix_events_workspace_seq", "events", ["workspace_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_events_workspace_seq", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_share_access_logs_share_created", table_name="share_access_logs")
    op.drop_table("share_access_logs")
    op.drop_index("ix_shares_tunnel_created", table_name="shares")
    op.drop_index("ix_shares_workspace_created", table_name="shares")
    op.drop_table("shares")
    op.drop_index("ix_connections_tunnel_created", table_name="connections")
    op.drop_table("connections")
    op.drop_index("ix_tunnels_expires_at", table_name="tunnels")
    op.drop_index("ix_tunnels_agent_id", table_name="tunnels")
    op.drop_index("ix_tunnels_workspace_created", table_name="tunnels")
    op.drop_table("tunnels")
