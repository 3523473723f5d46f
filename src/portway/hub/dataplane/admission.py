"""Who may open a session on the agent endpoint: agents by their token, `portway join` guests
by a share token, data channels by their session's secret.

`DataPlane._accept` reads the first frame of every connection and hands a `control_hello` to
`Admission.admit()`, which either refuses the connection (and closes it) or returns the new
`AgentSession`; the data plane then registers it, sends `welcome` and runs the session. When the
control connection ends the data plane calls `disconnected()` (the `agent.disconnected` event).
A `channel_hello` (a further connection joining a live session) is checked by
`check_join()`. After every snapshot reload `lapsed()` says which
agent sessions lost their token (agent deleted, token rotated) and must end.
"""

from __future__ import annotations

import contextlib
import hmac
import uuid

from portway.domain.clock import Clock
from portway.domain.secrets import SHARE_TOKEN_PREFIX
from portway.hub.dataplane.guests import Guest, Guests
from portway.hub.dataplane.sessions import AgentSession
from portway.net import identity
from portway.net.framed import ConnectionClosed, FramedConnection
from portway.store import Database, agents, events
from portway.store.models import Agent
from portway.wire.codes import SessionCode
from portway.wire.control_messages import FEATURE_E2E, ChannelHello, ControlHello, Refused
from portway.wire.frames import MAX_CONTROL_PAYLOAD


def refuse(conn: FramedConnection, code: SessionCode, message: str) -> None:
    """Answer a hello with `refused` and close the connection."""
    with contextlib.suppress(ConnectionClosed):
        conn.send(Refused(code, message))
    conn.close()


def check_join(hello: ChannelHello, session: AgentSession | None) -> tuple[SessionCode, str] | None:
    """Why a connection may not join `session` (the one its hello names, None when that session
    is not live), or None when the hello carries the session's secret."""
    if session is None:
        return SessionCode.UNKNOWN_SESSION, "no live session with that id"
    if hello.secret is None or not hmac.compare_digest(hello.secret, session.secret):
        return SessionCode.BAD_SECRET, "session secret does not match"
    return None


def lapsed(session: AgentSession, token_hashes: dict[uuid.UUID, str]) -> SessionCode | None:
    """Why an agent session's token no longer admits it (`token_hashes`: every agent's current
    hash), or None while it still does. Guest sessions are `Guests.run`'s to check."""
    if token_hashes.get(session.agent_id) == session.token_hash:
        return None
    return SessionCode.REVOKED if session.agent_id not in token_hashes else SessionCode.ROTATED


class Admission:
    def __init__(
        self, db: Database, clock: Clock, guests: Guests, identity_ca: identity.HubIdentityCa
    ) -> None:
        self._db = db
        self._clock = clock
        self._guests = guests
        self._identity_ca = identity_ca

    async def admit(self, conn: FramedConnection, hello: ControlHello) -> AgentSession | None:
        """The session a control hello opens, or None after refusing it.

        An agent token is checked against the store, which records the agent's last contact and
        version and appends `agent.connected`; a share token (`portway join`) is admitted by
        `Guests` and gets a throw-away agent id. An agent that sent a certificate request
        (feature `e2e`) gets its certificate here, naming it (or a guest's share). The caller
        owns the session from here: it registers it, sends `welcome`, and ends it through its
        end-of-session path, which also forgets a guest.
        """
        request = None
        if FEATURE_E2E in hello.features and hello.csr is not None:
            try:
                request = identity.parse_request(hello.csr)
            except identity.BadCertificateRequest as exc:
                refuse(conn, SessionCode.BAD_HELLO, str(exc))
                return None
        now = self._clock.now()
        guest: Guest | None = None
        who = (uuid.uuid4(), uuid.uuid4(), "", "")
        if hello.token.startswith(SHARE_TOKEN_PREFIX):  # a `portway join` guest
            admitted = await self._guests.admit(hello.token)
            if not isinstance(admitted, Guest):
                refuse(conn, *admitted)
                return None
            guest = admitted
            who = (uuid.uuid4(), guest.workspace_id, guest.name, "")
        async with self._db.session() as db:
            agent = None if guest else await agents.authenticate(db, hello.token)
            if agent is not None:
                agent.last_seen_at = now
                agent.version = (hello.software or None) and hello.software[:64]
                await events.append(
                    db, agent.workspace_id, "agent.connected", str(agent.id),
                    {"agentId": str(agent.id), "name": agent.name, "hostname": hello.hostname},
                    now,
                )  # fmt: skip
                who = (agent.id, agent.workspace_id, agent.name, agent.token_hash)
        if agent is None and guest is None:
            refuse(
                conn, SessionCode.UNKNOWN_TOKEN,
                "the hub does not know this agent token (revoked, rotated or from another hub); "
                "run 'portway up' again after 'portway login'",
            )  # fmt: skip
            return None
        agent_id, workspace_id, name, token_hash = who
        conn.reader.frames.max_payload = MAX_CONTROL_PAYLOAD
        session = AgentSession(
            agent_id=agent_id, workspace_id=workspace_id, agent_name=name, control=conn,
            features=frozenset(hello.features),
        )  # fmt: skip
        session.token_hash = token_hash
        if request is not None:
            names = (
                (identity.share_uri(guest.share_id),)
                if guest is not None
                else (identity.agent_uri(agent_id), identity.workspace_uri(workspace_id))
            )
            session.request = request
            session.certificate = self._identity_ca.issue(request, uris=names)
            session.identity_uri = names[0]
        if guest is not None:
            peer = conn.transport.get_extra_info("peername") if conn.transport else None
            guest.remote_addr = str(peer[0]) if peer else ""
            self._guests.attach(guest, session)
        return session

    async def disconnected(self, session: AgentSession, code: SessionCode) -> None:
        """Record that `session` ended: the agent's last contact and `agent.disconnected`.
        Guest sessions have no agent row and record nothing."""
        now = self._clock.now()
        async with self._db.session() as db:
            agent = await db.get(Agent, session.agent_id)
            if agent is not None:
                agent.last_seen_at = now
                await events.append(
                    db, session.workspace_id, "agent.disconnected", str(session.agent_id),
                    {"agentId": str(session.agent_id), "name": session.agent_name,
                     "reason": code.value},
                    now,
                )  # fmt: skip
