"""The hub's data plane: the wiring of the agent endpoint, sessions, pairing and hub ports.

`Hub.start()` creates one `DataPlane` and calls `start()`; `Hub.stop()` calls `stop()`. The
data plane keeps an in-memory snapshot of tunnels and binds (`routes.Snapshot`), reloaded
whenever the store's event log moves (`refresh`), and writes back only in batches: tunnel
statuses when they change (`statuses`), traffic counters every few seconds (`counters`).
Who may connect is `admission`'s to decide; the live sessions are in `registry`, what each
should hold is pushed by `desired`, and the public listeners on hub ports are `hub_ports`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from portway.domain.clock import Clock
from portway.hub.core.access_log import AccessLog
from portway.hub.core.config import HubConfig
from portway.hub.core.presence import AgentPresence
from portway.hub.core.ticker import Ticker
from portway.hub.dataplane import counters, refresh, routes
from portway.hub.dataplane.admission import Admission, check_join, lapsed, refuse
from portway.hub.dataplane.certificates import RENEW_CHECK_SECONDS, TunnelCertificates
from portway.hub.dataplane.channels import TargetChannels
from portway.hub.dataplane.desired import DesiredStates
from portway.hub.dataplane.diagnostics import Diagnostics
from portway.hub.dataplane.direct_grants import DirectGrants
from portway.hub.dataplane.endpoint import agent_endpoint
from portway.hub.dataplane.guests import CHECK_SECONDS, Guests
from portway.hub.dataplane.hub_ports import HubPorts
from portway.hub.dataplane.links import AgentLinks
from portway.hub.dataplane.pairing import Pairing
from portway.hub.dataplane.registry import SessionRegistry
from portway.hub.dataplane.sessions import AgentSession
from portway.hub.dataplane.statuses import Statuses
from portway.hub.dataplane.traffic import Traffic
from portway.hub.dataplane.udp import UdpContext
from portway.net import agent_port
from portway.net.control import run_control
from portway.net.framed import ConnectionClosed, FramedConnection
from portway.net.identity import HubIdentityCa
from portway.net.mux import MuxConnection
from portway.services import AgentEndpoint
from portway.store import Database
from portway.wire.codes import Reason, SessionCode
from portway.wire.control_messages import (
    ChannelHello,
    ControlHello,
    Counters,
    Goodbye,
    ReachOpen,
    Status,
    Welcome,
)
from portway.wire.errors import ProtocolError
from portway.wire.frames import MAX_CONTROL_PAYLOAD
from portway.wire.messages import Message

log = logging.getLogger("portway.hub.dataplane")

HEARTBEAT_INTERVAL = 5.0
HEARTBEAT_TIMEOUT = 15.0  # a hung agent is dropped within this
HELLO_TIMEOUT = 10.0


class DataPlane:
    """Built by `Hub.start()` with everything it depends on; every part gets what it uses at
    construction (the route table, the session registry, the channel opener), never later."""

    def __init__(
        self,
        config: HubConfig,
        db: Database,
        clock: Clock,
        presence: AgentPresence,
        access_log: AccessLog,
        identity_ca: HubIdentityCa,
        *,
        events_moved: Callable[[], None],
    ) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.table = routes.RouteTable()
        self.traffic = Traffic()
        self.endpoint: AgentEndpoint | None = None
        self._events_moved = events_moved  # the store's event log moved (wakes webhooks)
        self._server: asyncio.Server | None = None
        self._links = AgentLinks(
            self._accept, self._spawn, hello_timeout=HELLO_TIMEOUT,
            heartbeat=(HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT),
        )  # fmt: skip
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[Ticker] = []
        sessions = self._sessions = SessionRegistry(presence)
        self._grants = DirectGrants()
        self._desired = DesiredStates(
            self.table, sessions, TunnelCertificates(identity_ca, clock), self._grants
        )
        self.channels = TargetChannels(self.table, sessions.serving, self._target_result)
        self.udp = UdpContext(self.channels, self.table, self.traffic, clock, self._spawn)
        # `portway join` sessions authenticated by a share
        self.guests = Guests(db, clock, access_log)
        self.pairing = Pairing(
            self.channels, self.table, self.traffic, clock, udp=self.udp, splices=self.guests,
            grants=self._grants, granted=self._push_agent,
        )  # fmt: skip
        self._identity_ca = identity_ca
        self._admission = Admission(db, clock, self.guests, identity_ca)
        self._hub_ports = HubPorts(config.edge_listen.host, self.pairing.visitor, self.udp)
        self._statuses = Statuses(
            db=db, clock=clock, table=self.table, serving=sessions.serving,
            port_error=self._hub_ports.error_of,
        )  # fmt: skip
        self.diagnostics = Diagnostics(
            db=db, clock=clock, table=self.table, serving=sessions.serving,
            desired=self._desired, spawn=self._spawn,
        )  # fmt: skip

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the snapshot, bind the agent port and public ports, start background loops."""
        context, endpoint = agent_endpoint(self.config)
        await self._refresh()
        listen = self.config.agent_listen
        self._server = await agent_port.listen(
            self._links.accept, listen.host, listen.port, ssl_context=context,
            preface_timeout=HELLO_TIMEOUT,
        )  # fmt: skip
        self.endpoint = endpoint.on_port(self._server.sockets[0].getsockname()[1])
        events = refresh.EventWatch(self.db, self._refresh, self._events_moved)
        self._loops = [
            Ticker(events.check, refresh.EVENT_POLL_SECONDS, name="portway-events", log=log,
                   failure="refreshing tunnel state failed; retrying"),
            Ticker(partial(counters.flush, self.db, self.traffic), counters.STATS_FLUSH_SECONDS,
                   name="portway-stats", log=log,
                   failure="writing traffic counters failed; they will be retried"),
            Ticker(self.guests.sweep, CHECK_SECONDS, name="portway-guests", log=log,
                   failure="checking guest sessions failed; retrying"),
            Ticker(self._push_all, RENEW_CHECK_SECONDS, name="portway-renew", log=log,
                   failure="renewing tunnel certificates failed; retrying"),
        ]  # fmt: skip
        for ticker in self._loops:
            ticker.start()
        log.info(
            "agent endpoint listening",
            extra={"port": self.endpoint.port, "tls": self.endpoint.tls},
        )

    async def stop(self) -> None:
        """Say goodbye to every session, end live connections, close every listener, then
        write the last traffic counters."""
        for ticker in self._loops:
            await ticker.stop()
        for session in self._sessions.all():
            with contextlib.suppress(ConnectionClosed):
                session.control.send(Goodbye(SessionCode.SHUTTING_DOWN, "hub is stopping"))
            session.close()
        for tunnel_id in list(self.traffic.live):
            self.traffic.reset(tunnel_id, Reason.CLOSED)
        await self._hub_ports.close()
        if self._server is not None:
            self._server.close()
            self._links.close_all()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await counters.flush(self.db, self.traffic)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- agent endpoint ----------------------------------------------------------------------

    async def _accept(self, link: MuxConnection, conn: FramedConnection) -> None:
        """The control stream of every agent connection (run by `AgentLinks`): its first frame
        says whether it opens an agent session, joins one as a further link, or (a second stream
        of a link that already joined) carries the session's control stream from now on."""
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                hello = await conn.recv()
        except (TimeoutError, ProtocolError, ConnectionClosed) as exc:
            self._refuse(link, conn, SessionCode.BAD_HELLO, f"no valid hello: {exc}")
            return
        if isinstance(hello, ControlHello):
            await self._control(link, conn, hello)
        elif isinstance(hello, ChannelHello):
            session = self._sessions.get(hello.session)
            refusal = check_join(hello, session)
            if refusal is None and session is not None and self._links.session_of(link) is session:
                self._move_control(session, conn)
            elif refusal is None and session is not None and self._links.join(link, session):
                conn.send(self._welcome(session))
            else:
                self._refuse(link, conn, *(refusal or (SessionCode.LIMIT, "too many sessions")))
        else:
            self._refuse(link, conn, SessionCode.BAD_HELLO, "the first frame must be a hello")

    def _refuse(
        self, link: MuxConnection, conn: FramedConnection, code: SessionCode, message: str
    ) -> None:
        refuse(conn, code, message)
        link.close()  # after the refusal: GO_AWAY, then the connection closes

    def _welcome(self, session: AgentSession) -> Welcome:
        ca = self._identity_ca.certificate_pem if session.certificate else None
        return Welcome(
            session=session.id, agent=str(session.agent_id),
            heartbeat_interval=HEARTBEAT_INTERVAL, heartbeat_timeout=HEARTBEAT_TIMEOUT,
            channel_secret=session.secret, pool_size=0, certificate=session.certificate,
            identity_ca=ca,
        )  # fmt: skip

    async def _control(
        self, link: MuxConnection, conn: FramedConnection, hello: ControlHello
    ) -> None:
        """Run one agent session from its admission to its end (`_end_session`)."""
        session = await self._admission.admit(conn, hello)
        if session is None:
            link.close()
            return  # refused
        self._links.join(link, session)
        self._sessions.add(session)
        conn.send(self._welcome(session))
        log.info("agent connected", extra={"agent": session.agent_name, "session": session.id})
        self._desired.push(session)
        self._spawn(self._statuses.sync())
        code = SessionCode.UNKNOWN
        try:
            current: FramedConnection | None = conn
            while current is not None:
                code = await run_control(
                    current, lambda m: self._on_message(session, m),
                    interval=HEARTBEAT_INTERVAL, dead_after=HEARTBEAT_TIMEOUT,
                )  # fmt: skip
                current = await self._next_control(session, current, code)
        finally:
            self._end_session(session, code)

    async def _next_control(
        self, session: AgentSession, ended: FramedConnection, code: SessionCode
    ) -> FramedConnection | None:
        """The control stream that follows `ended`, if the agent moves it to another of its
        connections within `HELLO_TIMEOUT` (it lost the one that carried it); None ends the
        session. A goodbye, a heartbeat timeout or a broken frame ends it at once."""
        if code is not SessionCode.UNKNOWN or session.closed:
            return None
        deadline = asyncio.get_running_loop().time() + HELLO_TIMEOUT
        while session.control is ended and session.links and not session.closed:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await session.control_changed.wait()
            session.control_changed.clear()
        if session.control is ended or session.closed:
            return None
        log.info("agent control moved", extra={"agent": session.agent_name, "session": session.id})
        self._desired.resend(session)
        return session.control

    def _move_control(self, session: AgentSession, conn: FramedConnection) -> None:
        """The agent opened a new control stream on a connection it keeps (it lost the one
        the old stream was on; if this side has not noticed yet, the old one ends now)."""
        conn.reader.frames.max_payload = MAX_CONTROL_PAYLOAD  # as admission does for the first
        old, session.control = session.control, conn
        old.abort()
        conn.send(self._welcome(session))
        session.control_changed.set()

    def _end_session(self, session: AgentSession, code: SessionCode) -> None:
        """Forget a session whose control connection ended; the store hears of it in a task."""
        self._sessions.remove(session)
        self.guests.forget(session)
        self._desired.forget(session)
        self.traffic.session_ended(session.id)
        for tunnel_id in self._grants.forget(session):  # its direct connections end
            route = self.table.route(tunnel_id)
            if route is not None:
                self._push_agent(route.agent_id)
        session.close()
        log.info("agent disconnected", extra={"agent": session.agent_name, "reason": code.value})
        self._spawn(self._after_disconnect(session, code))

    async def _after_disconnect(self, session: AgentSession, code: SessionCode) -> None:
        await self._admission.disconnected(session, code)
        await self._statuses.sync()

    async def _on_message(self, session: AgentSession, message: Message) -> None:
        if isinstance(message, Status):
            self._desired.acknowledged(session, message.revision)
            if message.candidates is not None:
                session.candidates = message.candidates
            for target in message.targets:
                session.targets[target.tunnel] = (target.ok, target.message)
            self.diagnostics.on_status(message)
            if message.binds:
                self._spawn(self._statuses.record_binds(message))
            self._spawn(self._statuses.sync())
        elif isinstance(message, Counters):
            self._counted(session, message)
        elif isinstance(message, ReachOpen) and self.guests.is_guest(session):
            self._spawn(self.guests.reach(session, message, self.pairing.reach))
        elif isinstance(message, ReachOpen):
            self._spawn(self.pairing.reach(session, message))

    def _target_result(
        self, session: AgentSession, tunnel_id: uuid.UUID, ok: bool, message: str
    ) -> None:
        """A pairing found the target up or down: the tunnel's status may change."""
        key = str(tunnel_id)
        if session.targets.get(key, (None, ""))[0] != ok:
            session.targets[key] = (ok, message)
            self._spawn(self._statuses.sync())

    def _counted(self, session: AgentSession, message: Counters) -> None:
        """An exposing agent's counters of its direct connections, for its own tunnels."""
        now = self.clock.now()
        for counter in message.items:
            with contextlib.suppress(ValueError):
                route = self.table.route(uuid.UUID(counter.tunnel))
                if route is not None and route.agent_id == session.agent_id:
                    self.traffic.reported(session.id, route.id, counter, now)

    def _push_agent(self, agent_id: uuid.UUID) -> None:
        """Push the desired state of every session of `agent_id` (who may reach its tunnels
        directly changed)."""
        for session in self._sessions.serving(agent_id):
            self._desired.push(session)

    async def _push_all(self) -> None:
        """Push every agent session's desired state: a no-op unless something in it changed,
        which a renewed tunnel certificate (`certificates.py`) does."""
        for session in self._sessions.all():
            if not self.guests.is_guest(session):
                self._desired.push(session)

    # -- snapshot ----------------------------------------------------------------------------

    async def _refresh(self) -> None:
        """Reload the snapshot and bring everything that follows it into line: live
        connections, hub ports, sessions whose token lapsed, desired states, statuses."""
        loaded = await refresh.load(self.db)
        old, self.table.snapshot = self.table.snapshot, loaded.snapshot
        for tunnel_id, reason in refresh.interrupted(old, loaded.snapshot):
            self.traffic.reset(tunnel_id, reason)
        # Desired states go out before a new tunnel's hub port opens: its first visitor's
        # assignment then follows the push (the agent also waits a little for one that lags).
        for session in self._sessions.all():
            if self.guests.is_guest(session):
                continue  # checked by `Guests.run` against its share
            if (code := lapsed(session, loaded.token_hashes)) is not None:
                with contextlib.suppress(ConnectionClosed):
                    session.control.send(Goodbye(code, "this agent's token is no longer valid"))
                session.close()
                continue
            self._desired.push(session)
        await self._hub_ports.sync(loaded.snapshot)
        await self._statuses.sync()
