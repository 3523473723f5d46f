"""Expires tunnels and shares whose `expiresAt` has passed, on a timer inside the hub's loop.

`Hub.start()` starts one `Reaper`, `Hub.stop()` stops it before closing the store. It looks
every second (by the injected clock's idea of now), so anything expires within about a second
of its time, well inside the 5 s promised. Each expiry leaves its event: an expired tunnel
records `tunnel.expired` and is deleted (`tunnel.deleted`, reason `expired`), which the data
plane answers by closing its connections and port; an expired share records `share.expired`
once (it already refused visitors, its status being derived from the clock).

Tests drive `run_once()` after advancing a `FrozenClock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from portway.domain.clock import Clock
from portway.store import Database, expiry

log = logging.getLogger("portway.hub.reaper")

INTERVAL_SECONDS = 1.0
BATCH = 100
STOP_GRACE_SECONDS = 5.0


class Reaper:
    def __init__(self, db: Database, clock: Clock, interval: float = INTERVAL_SECONDS) -> None:
        self.db = db
        self.clock = clock
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def run_once(self) -> int:
        """Expire everything due now, in batches; returns how many tunnels and shares expired."""
        total = 0
        for step in (expiry.expire_tunnels, expiry.expire_shares):
            while True:
                async with self.db.session() as session:
                    count = await step(session, now=self.clock.now(), limit=BATCH)
                total += count
                if count < BATCH:
                    break
        return total

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if expired := await self.run_once():
                    log.info("tunnels and shares expired", extra={"count": expired})
            except Exception:
                # A store hiccup must not end expiry for the life of the process.
                log.exception("expiring tunnels and shares failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    def start(self) -> None:
        """Start the timer; called by `Hub.start()`, which calls `stop()` at shutdown."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._loop(), name="portway-reaper")

    async def stop(self) -> None:
        """Let a pass in progress finish (bounded: it is never cut mid-transaction), then end."""
        if self._task is not None:
            self._stop.set()
            _done, late = await asyncio.wait({self._task}, timeout=STOP_GRACE_SECONDS)
            for task in late:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
