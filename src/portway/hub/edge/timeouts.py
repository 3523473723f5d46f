"""Client-side timeouts of the edge: a whole request head, an idle kept-alive connection, and
the gap between two reads of a request body.

`EdgeConnection` (connection.py) owns one `Watchdog` and starts the phases its `Conversation`
names: `start(HEAD)` when it accepts the connection, `start(IDLE)` between requests,
`start(BODY)` when a request head was read, `stop()` while the edge itself is the one waiting
(for the target's response, or after a `101`), and `close()` when the connection is gone. Its
`data_received` calls `received()`, which stores the loop time and nothing else: no timer is
re-armed per chunk. One timer handle per connection fires at the earliest possible deadline; if
the connection moved on since, it re-arms itself for the new deadline, otherwise it calls the
connection's `expired(phase, partial)`.

A body read is excused while the edge itself is not reading (backpressure from the target, a
request being decided) and while the client waits for a `100 Continue`.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; the hub's `--edge-head-timeout`, `--edge-idle-timeout`, `--edge-body-timeout`."""

    head: float = 15.0  # accept (or first byte after an idle gap) to a complete request head
    idle: float = 75.0  # a kept-alive connection with no request under way
    body: float = 60.0  # between two reads of a request body


class Phase(enum.Enum):
    IDLE = "idle"
    HEAD = "head"
    BODY = "body"


class Watchdog:
    def __init__(
        self,
        timeouts: Timeouts,
        expired: Callable[[Phase, bool], None],
        excused: Callable[[], bool],
    ) -> None:
        self._timeouts = timeouts
        self._expired = expired
        self._excused = excused
        self._loop = asyncio.get_running_loop()
        self._limits = {Phase.HEAD: timeouts.head, Phase.IDLE: timeouts.idle,
                        Phase.BODY: timeouts.body}  # fmt: skip
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0  # when the pending timer (`_handle`) fires
        self.phase: Phase | None = None
        self.partial = False  # HEAD: some bytes of the head arrived
        self.since = 0.0  # start of the phase; in BODY, the last read

    def start(self, phase: Phase, *, partial: bool = False) -> None:
        self.phase = phase
        self.partial = partial
        self.since = now = self._loop.time()
        self._arm(now + self._limits[phase])

    def stop(self) -> None:
        self.phase = None  # a pending timer fires, finds no phase and ends

    def close(self) -> None:
        """The connection is gone: drop the timer (and with it the connection's reference)."""
        self.phase = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def received(self) -> None:
        """Bytes arrived from the client (called per chunk: no timer work here)."""
        if self.phase is Phase.BODY:
            self.since = self._loop.time()
        elif self.phase is Phase.IDLE:
            self.start(Phase.HEAD, partial=True)  # once per request, not per chunk
        elif self.phase is Phase.HEAD:
            self.partial = True

    def _arm(self, when: float) -> None:
        # A timer due no later than `when` stays: `_fire` re-arms for whatever deadline holds
        # then. The phase changes several times per request; the timer seldom does.
        if self._handle is not None:
            if self._due <= when:
                return
            self._handle.cancel()
        self._due = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        phase = self.phase
        if phase is None:
            return
        now = self._loop.time()
        if phase is Phase.BODY and self._excused():
            self.since = now
        deadline = self.since + self._limits[phase]
        if now < deadline:
            self._arm(deadline)
            return
        self.phase = None
        self._expired(phase, self.partial)
