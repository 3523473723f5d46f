"""Reading the event log: pages for `GET /v1/events`, and tails for the live stream and webhooks.

A tail follows `events` in `seq` order. On PostgreSQL a transaction holding a lower `seq` may
commit after a higher one is already visible, so a tail stops at the first gap in the sequence
and waits up to `gap_grace` seconds for it to fill; a gap that stays open longer was a rolled
back insert and is skipped. SQLite hands out `seq` in commit order and never shows gaps.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from portway.store import seq_pages
from portway.store.models import Event
from portway.store.pages import Page

GAP_GRACE_SECONDS = 2.0
SCAN_LIMIT = 500


async def latest_seq(session: AsyncSession) -> int:
    """The highest `seq` in the log (0 when empty): where a reader of "new events only" starts."""
    return int(await session.scalar(select(func.max(Event.seq))) or 0)


async def list_page(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    types: Collection[str] | None,
    limit: int,
    cursor: str | None,
    after: int | None,
) -> Page[Event]:
    """A page of the workspace's events: newest first, or oldest first after the seq `after`."""
    stmt = select(Event).where(Event.workspace_id == workspace_id)
    if types:
        stmt = stmt.where(Event.type.in_(list(types)))
    return await seq_pages.paginate(
        session, stmt, Event.seq, limit=limit, cursor=cursor, after=after
    )


class EventTail:
    """A reader's position in the log. Callers: the SSE stream and the webhook fan-out.

    Call `read` repeatedly, each time in a fresh session; `position` is the highest `seq` the
    reader is done with (persist it to resume after a restart).
    """

    def __init__(
        self,
        position: int,
        *,
        gap_grace: float = GAP_GRACE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.position = position
        self.gap_grace = gap_grace
        self._monotonic = monotonic
        self._gaps: dict[int, float] = {}  # first missing seq -> when the gap was first seen

    async def _horizon(self, session: AsyncSession) -> int:
        """The highest seq up to which every event is visible or given up on."""
        seqs = (
            await session.scalars(
                select(Event.seq)
                .where(Event.seq > self.position)
                .order_by(Event.seq)
                .limit(SCAN_LIMIT)
            )
        ).all()
        safe, now = self.position, self._monotonic()
        for seq in seqs:
            if seq != safe + 1:
                first_seen = self._gaps.setdefault(safe + 1, now)
                if now - first_seen < self.gap_grace:
                    break
            safe = seq
        self._gaps = {start: at for start, at in self._gaps.items() if start > safe}
        return safe

    async def read(
        self,
        session: AsyncSession,
        *,
        workspace_id: uuid.UUID | None = None,
        types: Collection[str] | None = None,
    ) -> Sequence[Event]:
        """The next events (of one workspace, of some types, or all) in `seq` order.

        Advances `position` past everything examined, including events filtered out.
        """
        horizon = await self._horizon(session)
        if horizon == self.position:
            return []
        stmt = select(Event).where(Event.seq > self.position, Event.seq <= horizon)
        if workspace_id is not None:
            stmt = stmt.where(Event.workspace_id == workspace_id)
        if types:
            stmt = stmt.where(Event.type.in_(list(types)))
        found = (await session.scalars(stmt.order_by(Event.seq))).all()
        self.position = horizon
        return found
