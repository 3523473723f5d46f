"""Keeping the data plane's snapshot current with the store.

`EventWatch.check()` (a `DataPlane` `Ticker`, every `EVENT_POLL_SECONDS`) reads only the
store's event log for its highest sequence number, a cheap query, and calls `DataPlane._refresh`
when it moved, and at least every `RESYNC_SECONDS` regardless. The refresh reads the whole
state with `load()` and ends the live connections of the tunnels `interrupted()` names.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import func, select

from portway.hub.dataplane import routes
from portway.store import Database
from portway.store.models import Agent, Event
from portway.wire.codes import Reason

EVENT_POLL_SECONDS = 0.25
RESYNC_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Loaded:
    snapshot: routes.Snapshot
    token_hashes: dict[uuid.UUID, str]
    """Every agent's current token hash: a live session whose hash is gone or different
    belongs to a deleted agent or a rotated token (`admission.lapsed`)."""


async def load(db: Database) -> Loaded:
    async with db.session() as session:
        snapshot = await routes.load(session)
        hashes = {a.id: a.token_hash for a in (await session.scalars(select(Agent))).all()}
    return Loaded(snapshot, hashes)


def interrupted(old: routes.Snapshot, new: routes.Snapshot) -> Iterator[tuple[uuid.UUID, Reason]]:
    """Tunnels whose live connections must end, and the reason each is told: deleted, paused,
    or its target moved."""
    for tunnel_id, before in old.routes.items():
        after = new.routes.get(tunnel_id)
        if after is None:
            yield tunnel_id, Reason.CLOSED
        elif after.paused and not before.paused:
            yield tunnel_id, Reason.PAUSED
        elif (after.host, after.port) != (before.host, before.port):
            yield tunnel_id, Reason.CLOSED


class EventWatch:
    """Calls `refresh` when the event log moved since the last `check()`, and at least every
    `RESYNC_SECONDS`; `moved` too, but only when the log moved. A failed refresh raises; the
    next check tries again."""

    def __init__(
        self, db: Database, refresh: Callable[[], Awaitable[None]], moved: Callable[[], None]
    ) -> None:
        self._db = db
        self._refresh = refresh
        self._moved = moved
        self._loop = asyncio.get_running_loop()
        self._last_full = self._loop.time()
        self._last_seq = 0

    async def check(self) -> None:
        async with self._db.session() as session:
            seq = int(await session.scalar(select(func.max(Event.seq))) or 0)
        if seq != self._last_seq:
            self._moved()
        if seq != self._last_seq or self._loop.time() - self._last_full > RESYNC_SECONDS:
            self._last_seq = seq
            self._last_full = self._loop.time()
            await self._refresh()
