"""Datagram counters on tunnels (UDP tunnels): datagrams in, out and dropped.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = ("datagrams_in", "datagrams_out", "datagrams_dropped")


def upgrade() -> None:
    with op.batch_alter_table("tunnels") as batch:
        for name in COLUMNS:
            batch.add_column(
                sa.Column(name, sa.BigInteger(), nullable=False, server_default=sa.text("0"))
            )


def downgrade() -> None:
    with op.batch_alter_table("tunnels") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
