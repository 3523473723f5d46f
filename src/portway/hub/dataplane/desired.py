"""Desired-state pushes: which tunnels and binds each agent session should hold.

`DataPlane` calls `push()` for a session right after its welcome and for every session after
each snapshot reload; a push sends `desired_state` only when what the session should hold
changed since the last one it got. `forget()` runs when the session ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from portway.hub.dataplane import routes
from portway.hub.dataplane.registry import SessionRegistry
from portway.hub.dataplane.sessions import FEATURE_BINDS, AgentSession
from portway.net.framed import ConnectionClosed
from portway.wire.messages import DesiredState


class DesiredStates:
    def __init__(self, snapshot: Callable[[], routes.Snapshot], sessions: SessionRegistry) -> None:
        self._snapshot = snapshot
        self._sessions = sessions
        self._pushed: dict[str, tuple[Any, ...]] = {}  # session id -> last (tunnels, binds) sent

    def desired(self, session: AgentSession) -> tuple[Any, ...]:
        """(tunnel specs, bind specs) `session` should hold, sorted: equal states compare equal."""
        snap = self._snapshot()
        specs = (
            tuple(sorted((r.spec() for r in snap.tunnels_of(session.agent_id)), key=str))
            if session.serves
            else ()
        )
        binds: tuple[Any, ...] = ()
        if (
            FEATURE_BINDS in session.features
            and self._sessions.bind_holder(session.agent_id) is session
        ):
            binds = tuple(sorted((b.spec(r) for b, r in snap.binds_of(session.agent_id)), key=str))
        return specs, binds

    def push(self, session: AgentSession) -> None:
        """Send `session` its desired state (next revision) unless it already has it."""
        desired = self.desired(session)
        if self._pushed.get(session.id) == desired:
            return
        self._pushed[session.id] = desired
        session.revision += 1
        with contextlib.suppress(ConnectionClosed):
            session.control.send(
                DesiredState(revision=session.revision, tunnels=desired[0], binds=desired[1])
            )

    def forget(self, session: AgentSession) -> None:
        self._pushed.pop(session.id, None)
