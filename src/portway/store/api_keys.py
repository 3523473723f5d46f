"""API keys: issued once, stored as SHA-256, revoked by setting `revoked_at`.

Raises `Duplicate` (`api_key_name_taken`) from `create`; `NoSuchRow` (`api_key_not_found`) and
`LastKey` from `revoke`.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from portway.domain import secrets
from portway.errors import Conflict
from portway.store.errors import Duplicate, NoSuchRow
from portway.store.models import ApiKey, Workspace
from portway.store.pages import Page, paginate

# lastUsedAt is refreshed at most this often, so authenticating a request is a read, not a write.
LAST_USED_RESOLUTION = timedelta(seconds=30)


class LastKey(Conflict):
    """Revoking this key would leave its workspace with no way in (raised by `revoke`)."""

    code = "last_api_key"


def _active(workspace_id: uuid.UUID) -> Select[ApiKey]:
    return select(ApiKey).where(ApiKey.workspace_id == workspace_id, ApiKey.revoked_at.is_(None))


async def create(
    session: AsyncSession, workspace_id: uuid.UUID, name: str, *, now: datetime
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext key, which is never stored."""
    taken = await session.scalar(_active(workspace_id).where(ApiKey.name == name))
    if taken is not None:
        raise Duplicate(f"an API key named {name!r} already exists", code="api_key_name_taken")
    issued = secrets.issue(secrets.API_KEY_PREFIX)
    key = ApiKey(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        name=name,
        prefix=issued.visible_prefix,
        key_hash=issued.digest,
        created_at=now,
    )
    session.add(key)
    await session.flush()
    return key, issued.value


async def authenticate(
    session: AsyncSession, presented: str, *, now: datetime
) -> tuple[ApiKey, Workspace] | None:
    """The active key matching `presented` and its workspace, or None."""
    if not presented.startswith(secrets.API_KEY_PREFIX) or len(presented) > 200:
        return None
    row = (
        await session.execute(
            select(ApiKey, Workspace)
            .join(Workspace, Workspace.id == ApiKey.workspace_id)
            .where(ApiKey.key_hash == secrets.digest(presented), ApiKey.revoked_at.is_(None))
        )
    ).first()
    if row is None or not secrets.matches(presented, row[0].key_hash):
        return None
    key, workspace = row
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        key.last_used_at = now
    return key, workspace


async def list_page(
    session: AsyncSession, workspace_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Page[ApiKey]:
    return await paginate(
        session, _active(workspace_id), ApiKey.created_at, ApiKey.id, limit=limit, cursor=cursor
    )


async def revoke(
    session: AsyncSession, workspace_id: uuid.UUID, key_id: uuid.UUID, *, now: datetime
) -> None:
    key = await session.scalar(_active(workspace_id).where(ApiKey.id == key_id))
    if key is None:
        raise NoSuchRow("API key not found", code="api_key_not_found")
    remaining = await session.scalar(
        select(func.count()).select_from(
            _active(workspace_id).where(ApiKey.id != key_id).subquery()
        )
    )
    if not remaining:
        raise LastKey("this is the workspace's last API key; create another before revoking it")
    key.revoked_at = now
