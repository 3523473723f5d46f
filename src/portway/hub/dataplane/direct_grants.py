"""Who may reach each tunnel over the direct path (`docs/protocol.md` §21).

`Pairing` grants a reaching session a tunnel when it hands that session the exposing agent's
candidates (in a relayed end-to-end reach's `assign`); `DesiredStates` lists each tunnel's
peers in the exposing sessions' `desired_state.direct`, which is what the exposing agent's
direct port enforces. A grant lasts while the session that got it does: `forget()` runs when it
ends (its agent revoked, the share of a guest revoked, or it just left), and a paused or deleted
tunnel leaves the desired state with all its peers. Each change is pushed at once, so a direct
connection that is no longer allowed is cut within a push's time.
"""

from __future__ import annotations

import uuid

from portway.hub.dataplane.sessions import AgentSession


class DirectGrants:
    def __init__(self) -> None:
        # tunnel id -> identity URI -> the ids of the sessions of that identity granted it
        self._granted: dict[uuid.UUID, dict[str, set[str]]] = {}
        self._by_session: dict[str, set[uuid.UUID]] = {}

    def grant(self, tunnel_id: uuid.UUID, session: AgentSession) -> bool:
        """Let `session`'s identity reach `tunnel_id` directly; whether that is new for the
        identity (the exposing agent must then be told)."""
        uri = session.identity_uri
        if uri is None:
            return False
        sessions = self._granted.setdefault(tunnel_id, {}).setdefault(uri, set())
        new = not sessions
        sessions.add(session.id)
        self._by_session.setdefault(session.id, set()).add(tunnel_id)
        return new

    def peers(self, tunnel_id: uuid.UUID) -> tuple[str, ...]:
        """The identity URIs that may reach `tunnel_id` directly, sorted."""
        return tuple(sorted(self._granted.get(tunnel_id, {})))

    def forget(self, session: AgentSession) -> set[uuid.UUID]:
        """Drop `session`'s grants; the tunnels whose peers changed."""
        changed = set()
        uri = session.identity_uri or ""
        for tunnel_id in self._by_session.pop(session.id, set()):
            by_uri = self._granted.get(tunnel_id, {})
            sessions = by_uri.get(uri, set())
            sessions.discard(session.id)
            if not sessions and by_uri.pop(uri, None) is not None:
                changed.add(tunnel_id)
            if not by_uri:
                self._granted.pop(tunnel_id, None)
        return changed
