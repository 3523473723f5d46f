"""Expiry of tunnels and shares whose `expiresAt` has passed; run by the hub's reaper.

An expired tunnel records `tunnel.expired` and is then deleted (`store.tunnels.delete_expired`),
which the data plane answers by closing its connections. An expired share already refuses
visitors (its status derives from the clock); here it records `share.expired`, exactly once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portway.domain import event_kinds as ev
from portway.store import events, shares, tunnels
from portway.store.models import Share


async def expire_tunnels(session: AsyncSession, *, now: datetime, limit: int) -> int:
    """Delete up to `limit` expired tunnels, each with `tunnel.expired`; returns how many."""
    return await tunnels.delete_expired(session, now=now, limit=limit)


async def expire_shares(session: AsyncSession, *, now: datetime, limit: int) -> int:
    """Record `share.expired` for up to `limit` shares that expired (and were not revoked)."""
    stmt = (
        select(Share)
        .where(
            Share.expires_at.is_not(None),
            Share.expires_at <= now,
            Share.expired_at.is_(None),
            Share.revoked_at.is_(None),
        )
        .order_by(Share.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    found = (await session.scalars(stmt)).all()
    for share in found:
        share.expired_at = now
        await events.append(
            session,
            share.workspace_id,
            ev.SHARE_EXPIRED,
            share.id,
            {"share": shares.snapshot(share), "reason": ev.REASON_EXPIRED},
            now,
        )
    return len(found)
