"""Workspace rows: the tenant boundary every other row hangs from.

Raises `Duplicate` (`workspace_name_taken`) from `create`, `NoSuchRow` (`workspace_not_found`)
from `get` and `delete`.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from portway.store.errors import Duplicate, NoSuchRow
from portway.store.models import Workspace
from portway.store.pages import Page, paginate


async def create(
    session: AsyncSession, name: str, *, now: datetime, is_admin: bool = False
) -> Workspace:
    if await session.scalar(select(Workspace.id).where(Workspace.name == name)) is not None:
        raise Duplicate(f"a workspace named {name!r} already exists", code="workspace_name_taken")
    workspace = Workspace(id=uuid.uuid4(), name=name, is_admin=is_admin, created_at=now)
    session.add(workspace)
    await session.flush()
    return workspace


async def admin(session: AsyncSession) -> Workspace | None:
    return await session.scalar(select(Workspace).where(Workspace.is_admin.is_(True)))


async def count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Workspace)) or 0)


async def get(session: AsyncSession, workspace_id: uuid.UUID) -> Workspace:
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None:
        raise NoSuchRow("workspace not found", code="workspace_not_found")
    return workspace


async def list_page(session: AsyncSession, *, limit: int, cursor: str | None) -> Page[Workspace]:
    return await paginate(
        session, select(Workspace), Workspace.created_at, Workspace.id, limit=limit, cursor=cursor
    )


async def delete(session: AsyncSession, workspace_id: uuid.UUID) -> None:
    """Delete a workspace and, by cascade, everything it owns."""
    await session.delete(await get(session, workspace_id))
