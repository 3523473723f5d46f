"""Statuses the data plane writes back to the store: each tunnel's, and each reach bind's.

A tunnel's status (`active`, `connecting`, `error`) is observed, not stored state: `status_of()`
derives it from the hub port (`HubPorts.error_of`) and the target health its agent's serving
sessions report. `DataPlane` calls `sync()` whenever one of those may have changed (a session
came or went, a `status` arrived, a pairing found a target up or down, the snapshot reloaded);
`sync()` writes only the tunnels whose status differs from what it last wrote. Bind results in
an agent's `status` go to `record_binds()`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable

from portway.domain.clock import Clock
from portway.domain.tunnel_rules import TunnelStatus
from portway.hub.dataplane import routes
from portway.hub.dataplane.sessions import AgentSession
from portway.store import Database, connections, tunnels
from portway.wire.control_messages import Status

Observed = tuple[TunnelStatus, str | None]


class Statuses:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        table: routes.RouteTable,
        serving: Callable[[uuid.UUID], list[AgentSession]],
        port_error: Callable[[uuid.UUID], str | None],
    ) -> None:
        self._db = db
        self._clock = clock
        self._table = table
        self._serving = serving
        self._port_error = port_error
        self._written: dict[uuid.UUID, Observed] = {}

    def status_of(self, route: routes.Route) -> Observed:
        if (error := self._port_error(route.id)) is not None:
            return "error", error
        serving = self._serving(route.agent_id)
        if not serving:
            return "connecting", "no agent session is serving this tunnel"
        # Sessions that have not probed this target yet do not count: a process joining an
        # agent's identity must not flip a failing tunnel to active before it has looked.
        reports = [r for s in serving if (r := s.targets.get(str(route.id))) is not None]
        if reports and not any(ok for ok, _ in reports):
            return "error", reports[0][1] or "the agent cannot reach the target"
        return "active", None

    async def sync(self) -> None:
        """Write the status of every unpaused tunnel whose observed status changed."""
        now = self._clock.now()
        changes: list[tuple[uuid.UUID, Observed]] = []
        for route in self._table.snapshot.routes.values():
            if route.paused:
                self._written.pop(route.id, None)
                continue
            observed = self.status_of(route)
            if self._written.get(route.id) != observed:
                changes.append((route.id, observed))
        if not changes:
            return
        async with self._db.session() as db:
            for tunnel_id, (status, reason) in changes:
                await tunnels.set_status(db, tunnel_id, status, reason, now=now)
        self._written.update(changes)

    async def record_binds(self, status: Status) -> None:
        """Store the bind results of an agent's `status` (`bound`, or `error` and why)."""
        now = self._clock.now()
        async with self._db.session() as db:
            for bind in status.binds:
                with contextlib.suppress(ValueError):
                    await connections.set_status(
                        db, uuid.UUID(bind.bind), "bound" if bind.ok else "error",
                        None if bind.ok else bind.message[:500], now=now,
                    )  # fmt: skip
