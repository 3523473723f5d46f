"""Keyset pagination over an integer sequence column (events, webhook deliveries).

Rows inserted together share a timestamp, so lists whose order matters exactly (the event log,
a webhook's queue) page by their `seq` instead of `(created_at, id)`. The cursor is opaque: it
carries the last `seq` returned and the direction, so a page never changes direction midway.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from portway.store.pages import BadCursor, Page

T = TypeVar("T")

# The largest value a sequence column holds (a signed 64-bit integer, on both databases).
MAX_SEQ = 2**63 - 1


def encode(seq: int, ascending: bool) -> str:
    raw = json.dumps({"s": seq, "a": ascending}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(cursor: str) -> tuple[int, bool]:
    """`(last seq, ascending)` of a cursor made by `encode`; `BadCursor` otherwise."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        seq, ascending = data["s"], data["a"]
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeError) as exc:
        raise BadCursor("cursor is not valid; pass the nextCursor of a previous page") from exc
    if type(seq) is not int or type(ascending) is not bool or not 0 <= seq <= MAX_SEQ:
        raise BadCursor("cursor is not valid; pass the nextCursor of a previous page")
    return seq, ascending


async def paginate(
    session: AsyncSession,
    stmt: Select[T],
    seq: InstrumentedAttribute[int],
    *,
    limit: int,
    cursor: str | None,
    ascending: bool = False,
    after: int | None = None,
) -> Page[T]:
    """One page of `stmt` ordered by `seq`: newest first, or oldest first after `after`.

    A cursor decides the direction itself; without one, `after` (a seq) asks for oldest first.
    """
    if cursor:
        last, ascending = decode(cursor)
    elif after is not None:
        last, ascending = after, True
    else:
        last = None
    if last is not None:
        stmt = stmt.where(seq > last) if ascending else stmt.where(seq < last)
    stmt = stmt.order_by(seq.asc() if ascending else seq.desc()).limit(limit + 1)
    rows: list[Any] = list((await session.scalars(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode(getattr(rows[-1], seq.key), ascending) if more else None
    return Page(items=rows, next_cursor=next_cursor)
