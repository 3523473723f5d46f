"""A background task that runs one step every few seconds for the life of the hub.

Used by `AccessLog` (flush queued share access logs), the edge's `LiveShares` (sweep live share
traffic) and `DataPlane` (follow the event log, write traffic counters, check guests' shares).
A failing step is logged and tried again on the next tick, never ends the loop; `stop()` cancels
the task between (or during) steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


class Ticker:
    def __init__(
        self,
        step: Callable[[], Awaitable[object]],
        interval: float,
        *,
        name: str,
        log: logging.Logger,
        failure: str,
    ) -> None:
        """`step` runs every `interval` seconds in a task called `name`; `failure` is what
        `log` says (with the traceback) when a step raised."""
        self._step = step
        self._interval = interval
        self._name = name
        self._log = log
        self._failure = failure
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._step()
            except Exception:
                self._log.exception(self._failure)
