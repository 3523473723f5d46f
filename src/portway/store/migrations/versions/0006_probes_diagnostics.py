"""What the agent's protocol probe found, and kept diagnostics runs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from portway.store.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tunnels") as batch:
        batch.add_column(sa.Column("probe", sa.JSON(), nullable=True))
    op.create_table(
        "diagnostics",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("tunnel_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("detected", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_diagnostics_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tunnel_id"],
            ["tunnels.id"],
            name="fk_diagnostics_tunnel_id_tunnels",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_diagnostics"),
    )
    op.create_index("ix_diagnostics_tunnel_created", "diagnostics", ["tunnel_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_diagnostics_tunnel_created", table_name="diagnostics")
    op.drop_table("diagnostics")
    with op.batch_alter_table("tunnels") as batch:
        batch.drop_column("probe")
