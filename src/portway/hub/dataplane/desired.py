"""Desired-state pushes: which tunnels and binds each agent session should hold, and what it
has applied.

`DataPlane` calls `push()` for a session right after its welcome and for every session after
each snapshot reload; a push sends `desired_state` only when what the session should hold
changed since the last one it got. The agent takes a revision's tunnels as it receives it, and
every `status` names the revision it reports on, so `acknowledged()` (each status) tells which
tunnels a session has applied (`applied()`). `forget()` runs when the session ends. Each push,
new acknowledgement and forget sets the event `changed()` returned, so diagnostics wait for a
fresh tunnel to reach its agent instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from portway.hub.dataplane import routes
from portway.hub.dataplane.certificates import TunnelCertificates
from portway.hub.dataplane.direct_grants import DirectGrants
from portway.hub.dataplane.registry import SessionRegistry
from portway.hub.dataplane.sessions import AgentSession
from portway.net.framed import ConnectionClosed
from portway.wire.control_messages import (
    FEATURE_BINDS,
    FEATURE_DIRECT,
    DesiredState,
    DirectGrant,
    TunnelSpec,
)


class DesiredStates:
    def __init__(
        self,
        table: routes.RouteTable,
        sessions: SessionRegistry,
        certificates: TunnelCertificates,
        grants: DirectGrants,
    ) -> None:
        self._table = table
        self._sessions = sessions
        self._certificates = certificates
        self._grants = grants
        self._pushed: dict[str, tuple[Any, ...]] = {}  # session id -> last (tunnels, binds) sent
        # session id -> each tunnel spec of the last push -> the revision it was first sent in
        self._since: dict[str, dict[TunnelSpec, int]] = {}
        self._acked: dict[str, int] = {}  # session id -> newest revision a status reported on
        self._change = asyncio.Event()

    def desired(self, session: AgentSession) -> tuple[Any, ...]:
        """(tunnel specs, bind specs, tunnel certificates, direct grants) `session` should
        hold, sorted: equal states compare equal."""
        snap = self._table.snapshot
        served = snap.tunnels_of(session.agent_id) if session.serves else []
        specs = tuple(sorted((r.spec() for r in served), key=str))
        direct: tuple[DirectGrant, ...] = ()
        if FEATURE_DIRECT in session.features and session.identity_uri is not None:
            granted = sorted((str(r.id), self._grants.peers(r.id)) for r in served if r.e2e)
            direct = tuple(DirectGrant(tunnel, peers) for tunnel, peers in granted if peers)
        binds: tuple[Any, ...] = ()
        if (
            FEATURE_BINDS in session.features
            and self._sessions.bind_holder(session.agent_id) is session
        ):
            binds = tuple(sorted((b.spec(r) for b, r in snap.binds_of(session.agent_id)), key=str))
        return specs, binds, self._certificates.of(session, tuple(s.id for s in specs)), direct

    def push(self, session: AgentSession) -> None:
        """Send `session` its desired state (next revision) unless it already has it."""
        desired = self.desired(session)
        if self._pushed.get(session.id) == desired:
            return
        self._pushed[session.id] = desired
        session.revision += 1
        carried = self._since.get(session.id, {})
        self._since[session.id] = {t: carried.get(t, session.revision) for t in desired[0]}
        tunnels, binds, certificates, direct = desired
        state = DesiredState(session.revision, tunnels, binds, certificates or None, direct or None)
        with contextlib.suppress(ConnectionClosed):
            session.control.send(state)
        self._changed()

    def resend(self, session: AgentSession) -> None:
        """Push `session`'s desired state again (its control stream moved: what was sent on the
        old one may be lost)."""
        self._pushed.pop(session.id, None)
        self.push(session)

    def acknowledged(self, session: AgentSession, revision: int) -> None:
        """The agent sent a `status` on `revision`: it holds that revision (or a later one)."""
        if revision > self._acked.get(session.id, 0):
            self._acked[session.id] = revision
            self._changed()

    def sent(self, session: AgentSession, spec: TunnelSpec) -> bool:
        """Whether the last desired state pushed to `session` carries `spec`."""
        return spec in self._since.get(session.id, {})

    def applied(self, session: AgentSession, spec: TunnelSpec) -> bool:
        """Whether `session` acknowledged a revision carrying `spec` (and every one since)."""
        since = self._since.get(session.id, {}).get(spec)
        return since is not None and self._acked.get(session.id, 0) >= since

    def changed(self) -> asyncio.Event:
        """An event set at the next push, new acknowledgement or forget."""
        return self._change

    def forget(self, session: AgentSession) -> None:
        self._certificates.forget(session)
        self._pushed.pop(session.id, None)
        self._since.pop(session.id, None)
        self._acked.pop(session.id, None)
        self._changed()

    def _changed(self) -> None:
        self._change.set()
        self._change = asyncio.Event()
