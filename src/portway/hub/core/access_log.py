"""Share access logs written in batches, off the edge's request path.

The edge calls `AccessLog.add()` (no I/O, never blocks) once per request on a share, allowed or
denied; a background task started by `Hub` writes what has queued about once a second in one
transaction, which also bumps `accessCount`/`lastAccessedAt`. `stop()` flushes what is left.
"""

from __future__ import annotations

import contextlib
import logging

from sqlalchemy.exc import IntegrityError

from portway.hub.core.ticker import Ticker
from portway.store import Database
from portway.store import shares as share_store
from portway.store.shares import Access

log = logging.getLogger("portway.hub.core.access_log")

FLUSH_SECONDS = 1.0
MAX_QUEUED = 100_000  # beyond this (a store outage under load) entries are dropped and counted


class AccessLog:
    def __init__(self, db: Database, interval: float = FLUSH_SECONDS) -> None:
        self._db = db
        self._queue: list[Access] = []
        self._ticker = Ticker(
            self.flush,
            interval,
            name="portway-access-log",
            log=log,
            failure="writing share access logs failed; retrying",
        )
        self.dropped = 0

    def add(self, entry: Access) -> None:
        if len(self._queue) >= MAX_QUEUED:
            self.dropped += 1
            return
        self._queue.append(entry)

    def start(self) -> None:
        self._ticker.start()

    async def stop(self) -> None:
        await self._ticker.stop()
        with contextlib.suppress(Exception):
            await self.flush()

    async def flush(self) -> None:
        """Write every queued entry in one transaction (put back if the store fails)."""
        batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            async with self._db.session() as session:
                await share_store.record_accesses(session, batch)
        except IntegrityError:
            log.warning("dropped access logs of deleted shares", extra={"count": len(batch)})
        except Exception:
            self._queue[:0] = batch
            raise
