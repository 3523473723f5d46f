"""The audit log: one row per mutating API call, written by `portway.api.audit` after it ran."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portway.store import seq_pages
from portway.store.models import AuditEntry
from portway.store.pages import Page


def _text(value: str, limit: int) -> str:
    # PostgreSQL refuses NUL in text, and a path may carry one (percent-encoded).
    return value.replace("\x00", "\ufffd")[:limit]


async def record(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    actor_type: str,
    actor_id: str,
    method: str,
    path: str,
    route: str | None,
    object_id: str | None,
    client_address: str | None,
    status_code: int,
    now: datetime,
) -> AuditEntry:
    """Add one entry (values are cut to their columns); the caller's session commits it."""
    entry = AuditEntry(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        created_at=now,
        actor_type=_text(actor_type, 16),
        actor_id=_text(actor_id, 64),
        method=_text(method, 16),
        path=_text(path, 2048),
        route=None if route is None else _text(route, 200),
        object_id=None if object_id is None else _text(object_id, 200),
        client_address=None if client_address is None else _text(client_address, 64),
        status_code=status_code,
    )
    session.add(entry)
    await session.flush()
    return entry


async def list_page(
    session: AsyncSession, workspace_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Page[AuditEntry]:
    """A page of the workspace's audit log, newest first (`GET /v1/audit-log`)."""
    stmt = select(AuditEntry).where(AuditEntry.workspace_id == workspace_id)
    return await seq_pages.paginate(session, stmt, AuditEntry.seq, limit=limit, cursor=cursor)
