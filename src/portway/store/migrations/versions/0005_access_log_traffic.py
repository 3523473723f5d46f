"""Bytes and latency of each proxied share request in the access log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("share_access_logs") as batch:
        batch.add_column(sa.Column("bytes_in", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("bytes_out", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("latency_ms", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("share_access_logs") as batch:
        batch.drop_column("latency_ms")
        batch.drop_column("bytes_out")
        batch.drop_column("bytes_in")
