"""Rows a workspace addresses by id or by name (agents, tunnels): the one lookup they share."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portway.store.errors import NoSuchRow
from portway.store.models import Agent, Tunnel

Named = TypeVar("Named", Agent, Tunnel)


async def by_ref(
    session: AsyncSession,
    model: type[Named],
    workspace_id: uuid.UUID,
    ref: str,
    missing: Callable[[], NoSuchRow],
) -> Named:
    """The row of `model` in this workspace whose id or else whose name is `ref`.

    Raises `missing()` otherwise: a malformed id, an unknown name and another workspace's row
    all look the same. An id wins over a name that happens to spell it.
    """
    if "\x00" in ref:
        # No name holds NUL, and PostgreSQL refuses it even in a query parameter.
        raise missing()
    stmt = select(model).where(model.workspace_id == workspace_id)
    try:
        found = await session.scalar(stmt.where(model.id == uuid.UUID(ref)))
    except ValueError:
        found = None
    if found is None:
        found = await session.scalar(stmt.where(model.name == ref))
    if found is None:
        raise missing()
    return found
