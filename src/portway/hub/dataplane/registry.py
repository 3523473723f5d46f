"""The live agent sessions on this hub, by session id and by agent.

`DataPlane` owns one `SessionRegistry`: it `add()`s a session once admission has made it and
`remove()`s it when its control connection ends; both keep `AgentPresence` (what the API shows
as an agent's connected sessions) in step. Pairing, statuses and diagnostics ask `serving()`
for the sessions that may take a tunnel's connections; desired-state pushes ask
`bind_holder()` which session holds an agent's API-created binds.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict

from portway.hub.core.presence import AgentPresence
from portway.hub.dataplane.sessions import AgentSession
from portway.wire.control_messages import FEATURE_BINDS


class SessionRegistry:
    def __init__(self, presence: AgentPresence) -> None:
        self._presence = presence
        self._sessions: dict[str, AgentSession] = {}
        self._by_agent: defaultdict[uuid.UUID, list[AgentSession]] = defaultdict(list)

    def add(self, session: AgentSession) -> None:
        self._sessions[session.id] = session
        self._by_agent[session.agent_id].append(session)
        self._presence.add(session.agent_id, uuid.UUID(session.id))

    def remove(self, session: AgentSession) -> None:
        self._sessions.pop(session.id, None)
        with contextlib.suppress(ValueError):
            self._by_agent[session.agent_id].remove(session)
        if not self._by_agent[session.agent_id]:
            del self._by_agent[session.agent_id]
        self._presence.remove(session.agent_id, uuid.UUID(session.id))

    def get(self, session_id: str) -> AgentSession | None:
        return self._sessions.get(session_id)

    def all(self) -> list[AgentSession]:
        """A copy: callers close sessions while they walk it."""
        return list(self._sessions.values())

    def serving(self, agent_id: uuid.UUID) -> list[AgentSession]:
        """The agent's open sessions that dial its tunnels' targets, oldest first."""
        return [s for s in self._by_agent.get(agent_id, ()) if s.serves and not s.closed]

    def bind_holder(self, agent_id: uuid.UUID) -> AgentSession | None:
        """API-created binds go to one session per agent (the oldest that accepts them)."""
        for session in self._by_agent.get(agent_id, ()):
            if FEATURE_BINDS in session.features:
                return session
        return None
