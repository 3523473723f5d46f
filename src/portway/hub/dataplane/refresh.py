"""Keeping the data plane's snapshot current with the store.

`watch_events()` (a `DataPlane` background task) polls only the store's event log for its
highest sequence number, a cheap query, and calls `DataPlane._refresh` when it moved, and at
least every `RESYNC_SECONDS` regardless. The refresh reads the whole state with `load()` and
ends the live connections of the tunnels `interrupted()` names.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import func, select

from portway.hub.dataplane import routes
from portway.store import Database
from portway.store.models import Agent, Event
from portway.wire.codes import Reason

log = logging.getLogger("portway.hub.dataplane")

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


async def watch_events(db: Database, refresh: Callable[[], Awaitable[None]]) -> None:
    """Call `refresh` after the event log moved (checked every `EVENT_POLL_SECONDS`) and at
    least every `RESYNC_SECONDS`; runs until cancelled, a failed refresh is retried."""
    loop = asyncio.get_running_loop()
    last_full = loop.time()
    last_seq = 0
    while True:
        await asyncio.sleep(EVENT_POLL_SECONDS)
        try:
            async with db.session() as session:
                seq = int(await session.scalar(select(func.max(Event.seq))) or 0)
            if seq != last_seq or loop.time() - last_full > RESYNC_SECONDS:
                last_seq = seq
                last_full = loop.time()
                await refresh()
        except Exception:
            log.exception("refreshing tunnel state failed; retrying")
