"""Share access logs written in batches, off the edge's request path.

The edge calls `AccessLog.add()` (no I/O, never blocks) once per request on a share, allowed or
denied; a background task started by `Hub` writes what has queued about once a second in one
transaction, which also bumps `accessCount`/`lastAccessedAt`. `stop()` flushes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from portway.store import Database
from portway.store import shares as share_store
from portway.store.models import Share

log = logging.getLogger("portway.hub.access_log")

FLUSH_SECONDS = 1.0
MAX_QUEUED = 100_000  # beyond this (a store outage under load) entries are dropped and counted


@dataclass(frozen=True, slots=True)
class Entry:
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


class AccessLog:
    def __init__(self, db: Database, interval: float = FLUSH_SECONDS) -> None:
        self._db = db
        self._interval = interval
        self._queue: list[Entry] = []
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def add(self, entry: Entry) -> None:
        if len(self._queue) >= MAX_QUEUED:
            self.dropped += 1
            return
        self._queue.append(entry)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="portway-access-log")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception:
                log.exception("writing share access logs failed; retrying")

    async def flush(self) -> None:
        """Write every queued entry in one transaction (put back if the store fails)."""
        batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            async with self._db.session() as session:
                for entry in batch:
                    share = Share(id=entry.share_id, workspace_id=entry.workspace_id)
                    await share_store.record_access(
                        session, share, remote_addr=entry.remote_addr, allowed=entry.allowed,
                        now=entry.at, method=entry.method, path=entry.path,
                        status_code=entry.status, reason=entry.reason,
                        user_agent=entry.user_agent, bytes_in=entry.bytes_in,
                        bytes_out=entry.bytes_out, latency_ms=entry.latency_ms,
                    )  # fmt: skip
        except IntegrityError:
            log.warning("dropped access logs of deleted shares", extra={"count": len(batch)})
        except Exception:
            self._queue[:0] = batch
            raise
