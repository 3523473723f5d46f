"""The event log: one row per change, written in the same transaction as the change itself.

Every repository function that mutates a tunnel, connection or share calls `append`, so an
event exists if and only if its change was committed. Webhooks, the live feed and the audit log
read the rows back in `seq` order (`after`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portway.domain.event_kinds import EVENT_TYPES
from portway.store.models import Event


async def append(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    type: str,
    object_id: uuid.UUID | str,
    payload: dict[str, Any],
    now: datetime,
) -> Event:
    """Record one change; the caller commits it together with the change (or rolls both back).

    `payload` must be JSON-safe (strings, numbers, lists, dicts, None) and hold no secrets;
    see `portway.domain.event_kinds` for what each type carries.
    """
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    event = Event(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        type=type,
        object_id=str(object_id),
        payload=payload,
        created_at=now,
    )
    session.add(event)
    return event


async def after(
    session: AsyncSession, workspace_id: uuid.UUID, seq: int = 0, *, limit: int = 100
) -> Sequence[Event]:
    """A workspace's events with `seq` greater than `seq`, oldest first, at most `limit`."""
    stmt = (
        select(Event)
        .where(Event.workspace_id == workspace_id, Event.seq > seq)
        .order_by(Event.seq)
        .limit(limit)
    )
    return (await session.scalars(stmt)).all()
