"""Share access-log rows written through the database driver itself, many at a time.

`shares.record_accesses` calls `insert_accesses()` once a second with every request the edge
answered on a share meanwhile (thousands under load). Going through the ORM or Core, each row
costs tens of microseconds of parameter processing on the hub's event loop, which is also what
relays every request; here a row is one tuple of values already in the column's stored form
and the driver's own `executemany` (aiosqlite's thread, asyncpg's pipelined protocol) does the
rest. The stored forms are SQLAlchemy's for these column types, so the ORM reads these rows
like any other (`tests/store/test_access_rows.py` checks it on every backend the suite runs).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from portway.store.shares import Access

COLUMNS = (
    "id", "workspace_id", "share_id", "created_at", "remote_addr", "method", "path",
    "status_code", "allowed", "reason", "user_agent", "bytes_in", "bytes_out", "latency_ms",
)  # fmt: skip
# Built from the constants above only, never from input: hence the S608 exemptions.
_NAMES = ", ".join(COLUMNS)
_INTO = f"INSERT INTO share_access_logs ({_NAMES}) VALUES "  # noqa: S608
SQLITE_INSERT = _INTO + f"({', '.join('?' * len(COLUMNS))})"
POSTGRES_INSERT = _INTO + f"({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))})"


async def insert_accesses(conn: AsyncConnection, batch: Sequence[Access]) -> None:
    """Insert one row per entry inside `conn`'s transaction, which must already be under way
    (the caller ran a statement on it first). Raises SQLAlchemy's `IntegrityError` when a share
    was deleted meanwhile, as an ORM insert would."""
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    try:
        if conn.dialect.name == "sqlite":
            await driver.executemany(SQLITE_INSERT, [_sqlite_row(a) for a in batch])
        else:
            await driver.executemany(POSTGRES_INSERT, [_native_row(a) for a in batch])
    except Exception as exc:
        if _is_integrity(exc):
            raise IntegrityError(SQLITE_INSERT, None, exc) from exc
        raise


def _native_row(a: Access) -> tuple[Any, ...]:
    return (
        uuid.uuid4(), a.workspace_id, a.share_id, a.at.astimezone(UTC), a.remote_addr[:64],
        a.method[:16], a.path[:2048], a.status, a.allowed,
        None if a.reason is None else a.reason[:64],
        None if a.user_agent is None else a.user_agent[:256],
        a.bytes_in, a.bytes_out, a.latency_ms,
    )  # fmt: skip


def _sqlite_row(a: Access) -> tuple[Any, ...]:
    # SQLite stores a UUID as 32 hex digits and a datetime as naive UTC text with microseconds
    # (SQLAlchemy's `Uuid` and `DateTime` on SQLite; `UTCDateTime` makes it UTC).
    return (
        uuid.uuid4().hex, a.workspace_id.hex, a.share_id.hex, _sqlite_time(a.at),
        a.remote_addr[:64], a.method[:16], a.path[:2048], a.status, int(a.allowed),
        None if a.reason is None else a.reason[:64],
        None if a.user_agent is None else a.user_agent[:256],
        a.bytes_in, a.bytes_out, a.latency_ms,
    )  # fmt: skip


def _sqlite_time(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _is_integrity(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return False
    return isinstance(exc, asyncpg.exceptions.IntegrityConstraintViolationError)
