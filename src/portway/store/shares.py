"""Shares and their access logs. Tokens are issued once and stored only as SHA-256.

The router creates, lists and revokes shares; the edge (shares data plane) looks them up by
token with `authenticate`; the hub's access log writes the rows of its requests in batches
with `record_accesses`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from portway.domain import event_kinds as ev
from portway.domain import secrets
from portway.store import events
from portway.store.access_rows import insert_accesses
from portway.store.errors import NoSuchRow
from portway.store.models import Share, ShareAccessLog, Tunnel
from portway.store.pages import Page, paginate

MAX_TOKEN_LENGTH = 200


def snapshot(share: Share) -> dict[str, Any]:
    """The share as event payloads carry it: never the token, only its visible prefix."""
    return {
        "id": str(share.id),
        "tunnelId": str(share.tunnel_id),
        "name": share.name,
        "description": share.description,
        "tokenPrefix": share.token_prefix,
        "expiresAt": None if share.expires_at is None else share.expires_at.isoformat(),
        "allowedMethods": share.allowed_methods,
        "allowedPaths": share.allowed_paths,
        "rateLimit": share.rate_limit,
        "createdAt": share.created_at.isoformat(),
        "revokedAt": None if share.revoked_at is None else share.revoked_at.isoformat(),
    }


async def create(
    session: AsyncSession,
    tunnel: Tunnel,
    *,
    name: str,
    description: str | None,
    expires_at: datetime | None,
    allowed_methods: list[str] | None,
    allowed_paths: list[str] | None,
    rate_limit: int | None,
    now: datetime,
) -> tuple[Share, str]:
    """Create a share of `tunnel` with an already-normalised policy; records `share.created`.

    Returns the row and the plaintext token, which is never stored: the caller shows it once.
    """
    issued = secrets.issue(secrets.SHARE_TOKEN_PREFIX)
    share = Share(
        id=uuid.uuid4(),
        workspace_id=tunnel.workspace_id,
        tunnel_id=tunnel.id,
        name=name,
        description=description,
        token_prefix=issued.visible_prefix,
        token_hash=issued.digest,
        allowed_methods=allowed_methods,
        allowed_paths=allowed_paths,
        rate_limit=rate_limit,
        created_at=now,
        expires_at=expires_at,
        access_count=0,
    )
    session.add(share)
    await session.flush()
    await events.append(
        session, tunnel.workspace_id, ev.SHARE_CREATED, share.id, {"share": snapshot(share)}, now
    )
    return share, issued.value


async def get(session: AsyncSession, workspace_id: uuid.UUID, share_id: uuid.UUID) -> Share:
    """A share of this workspace, revoked and expired ones included; `NoSuchRow`
    (`share_not_found`) otherwise."""
    share = await session.scalar(
        select(Share).where(Share.workspace_id == workspace_id, Share.id == share_id)
    )
    if share is None:
        raise NoSuchRow("share not found", code="share_not_found")
    return share


def _status_is(status: str, now: datetime) -> ColumnElement[bool]:
    """SQL for `share_rules.share_status(...) == status` at `now`."""
    if status == "revoked":
        return Share.revoked_at.is_not(None)
    if status == "expired":
        return and_(
            Share.revoked_at.is_(None), Share.expires_at.is_not(None), Share.expires_at <= now
        )
    return and_(Share.revoked_at.is_(None), or_(Share.expires_at.is_(None), Share.expires_at > now))


async def list_page(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    tunnel_id: uuid.UUID | None = None,
    status: str | None = None,
    now: datetime,
    limit: int,
    cursor: str | None,
) -> Page[Share]:
    """A page of the workspace's shares (optionally one tunnel's, one status), newest first."""
    stmt = select(Share).where(Share.workspace_id == workspace_id)
    if tunnel_id is not None:
        stmt = stmt.where(Share.tunnel_id == tunnel_id)
    if status is not None:
        stmt = stmt.where(_status_is(status, now))
    return await paginate(session, stmt, Share.created_at, Share.id, limit=limit, cursor=cursor)


async def revoke(session: AsyncSession, share: Share, *, now: datetime) -> bool:
    """Revoke a share: its token stops working at once. Records `share.revoked`.

    Revoking a revoked share changes nothing and records nothing; returns whether it changed.
    """
    if share.revoked_at is not None:
        return False
    share.revoked_at = now
    await events.append(
        session,
        share.workspace_id,
        ev.SHARE_REVOKED,
        share.id,
        {"share": snapshot(share), "reason": ev.REASON_REVOKED},
        now,
    )
    return True


async def forget_for_tunnel(session: AsyncSession, tunnel: Tunnel, *, now: datetime) -> None:
    """Record `share.revoked` for each still-usable share of a tunnel that is being deleted.

    The rows (and their access logs) go by foreign-key cascade with the tunnel.
    """
    stmt = select(Share).where(Share.tunnel_id == tunnel.id, _status_is("active", now))
    for share in (await session.scalars(stmt)).all():
        await events.append(
            session,
            share.workspace_id,
            ev.SHARE_REVOKED,
            share.id,
            {"share": snapshot(share), "reason": ev.REASON_TUNNEL_DELETED},
            now,
        )


async def authenticate(
    session: AsyncSession, presented: str, *, now: datetime
) -> tuple[Share, Tunnel] | None:
    """The usable share whose token is `presented`, with its tunnel; None if unknown,
    revoked or expired. Called by the edge and by `/v1/join` for every use of a share link."""
    if not presented.startswith(secrets.SHARE_TOKEN_PREFIX) or len(presented) > MAX_TOKEN_LENGTH:
        return None
    row = (
        await session.execute(
            select(Share, Tunnel)
            .join(Tunnel, Tunnel.id == Share.tunnel_id)
            .where(Share.token_hash == secrets.digest(presented), _status_is("active", now))
        )
    ).first()
    if row is None or not secrets.matches(presented, row[0].token_hash):
        return None
    return row[0], row[1]


@dataclass(frozen=True, slots=True)
class Access:
    """One request on a share as the edge answered it (`hub/edge/entries.py` makes these)."""

    share_id: uuid.UUID
    workspace_id: uuid.UUID
    at: datetime
    remote_addr: str
    method: str
    path: str
    status: int
    allowed: bool
    reason: str | None
    user_agent: str | None
    bytes_in: int | None = None
    bytes_out: int | None = None
    latency_ms: float | None = None


async def record_accesses(session: AsyncSession, batch: Sequence[Access]) -> None:
    """Log a batch of share uses and count the allowed ones, one UPDATE per share (arithmetic
    in SQL, so concurrent writers never lose a count), then the rows in one driver-level
    `executemany` (access_rows.py). Values are truncated to the columns. Called by the hub's
    `AccessLog` about once a second."""
    if not batch:
        return
    counts: dict[uuid.UUID, tuple[int, datetime]] = {}
    for a in batch:
        if a.allowed:
            count, last = counts.get(a.share_id, (0, a.at))
            counts[a.share_id] = (count + 1, max(last, a.at))
    for share_id, (count, last) in counts.items():
        await session.execute(
            update(Share)
            .where(Share.id == share_id)
            .values(access_count=Share.access_count + count, last_accessed_at=last)
            .execution_options(synchronize_session=False)
        )
    if not counts:
        await session.execute(select(1))  # the transaction the rows go into starts here
    await insert_accesses(await session.connection(), batch)


async def access_logs(
    session: AsyncSession, share: Share, *, limit: int, cursor: str | None
) -> Page[ShareAccessLog]:
    """A page of a share's access log, newest first."""
    stmt = select(ShareAccessLog).where(ShareAccessLog.share_id == share.id)
    return await paginate(
        session,
        stmt,
        ShareAccessLog.created_at,
        ShareAccessLog.id,
        limit=limit,
        cursor=cursor,
    )
