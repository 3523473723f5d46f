"""Keyset pagination, newest first, stable while rows are being inserted.

Lists are ordered by ``(created_at DESC, id DESC)``; a cursor is the position of the last row
returned, so rows inserted after the first page was read never shift later pages.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from portway.errors import InvalidInput

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class BadCursor(InvalidInput):
    """The cursor was not produced by this API (or was damaged): a 422 naming `cursor`.

    Raised by `decode_cursor` and `seq_pages.decode`, so by every `list_page`-like function.
    """

    field = "cursor"


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_cursor: str | None


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        return datetime.fromisoformat(created), uuid.UUID(row_id)
    except (ValueError, TypeError, binascii.Error, UnicodeError) as exc:
        raise BadCursor("cursor is not valid; pass the nextCursor of a previous page") from exc


async def paginate(
    session: AsyncSession,
    stmt: Select[T],
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[uuid.UUID],
    *,
    limit: int,
    cursor: str | None,
) -> Page[T]:
    """Run `stmt` for one page; `created_at`/`row_id` are the model's ordering columns."""
    if cursor:
        at, last_id = decode_cursor(cursor)
        stmt = stmt.where(or_(created_at < at, and_(created_at == at, row_id < last_id)))
    stmt = stmt.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)
    rows: list[Any] = list((await session.scalars(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        last = rows[-1]
        next_cursor = encode_cursor(getattr(last, created_at.key), getattr(last, row_id.key))
    return Page(items=rows, next_cursor=next_cursor)
