"""Migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from portway.store import Database, migrate
from portway.store.models import Base


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


async def test_head_matches_models(db: Database) -> None:
    assert await migrate.current_revision(db) == migrate.head_revision()
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


async def test_downgrade_and_upgrade_round_trip(db: Database) -> None:
    await migrate.downgrade(db, "base")
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_tables) == set()
    await migrate.upgrade(db)
    await migrate.upgrade(db)  # idempotent, as every hub start calls it
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_tables) == set(Base.metadata.tables)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_runs_in_wal_with_foreign_keys(backend: str, tmp_path: object) -> None:
    from pathlib import Path

    from sqlalchemy import text

    assert isinstance(tmp_path, Path)
    db = Database.open(f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}")
    try:
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 5000
    finally:
        await db.close()
