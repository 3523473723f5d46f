"""Which agents have live control sessions on this hub process.

The agent endpoint (data plane) registers and drops sessions; the API reads counts to report
`online` and `sessions`. Kept in memory: a session is a live TCP connection to this process.
"""

from __future__ import annotations

import uuid
from collections import defaultdict


class AgentPresence:
    def __init__(self) -> None:
        self._sessions: defaultdict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)

    def add(self, agent_id: uuid.UUID, session_id: uuid.UUID) -> None:
        self._sessions[agent_id].add(session_id)

    def remove(self, agent_id: uuid.UUID, session_id: uuid.UUID) -> None:
        sessions = self._sessions.get(agent_id)
        if sessions is not None:
            sessions.discard(session_id)
            if not sessions:
                del self._sessions[agent_id]

    def sessions(self, agent_id: uuid.UUID) -> int:
        return len(self._sessions.get(agent_id, ()))
