"""The hub's data plane: the agent endpoint, pairing of visitors with agents, public ports.

`Hub.start()` creates one `DataPlane` and calls `start()`; `Hub.stop()` calls `stop()`. The
data plane keeps an in-memory snapshot of tunnels and binds (`routes.Snapshot`), reloaded
whenever the store's event log moves, and writes back only in batches: tunnel statuses when
they change, traffic counters every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import func, select

from portway.domain.clock import Clock
from portway.domain.secrets import SHARE_TOKEN_PREFIX
from portway.domain.tunnels import TunnelStatus
from portway.hub.config import HubConfig
from portway.hub.dataplane import routes
from portway.hub.dataplane.endpoint import AgentEndpoint, agent_endpoint
from portway.hub.dataplane.guests import Guest, Guests
from portway.hub.dataplane.pairing import Pairing, Unavailable
from portway.hub.dataplane.public import PublicPort
from portway.hub.dataplane.sessions import (
    FEATURE_BINDS,
    AgentSession,
)
from portway.hub.dataplane.traffic import Traffic
from portway.hub.dataplane.udp import UdpContext, UdpPort, reach_udp
from portway.hub.presence import AgentPresence
from portway.net.control import run_control
from portway.net.framed import ConnectionClosed, FramedConnection, FramedServer, serve
from portway.store import Database, agents, connections, events, tunnels
from portway.store.models import Agent, Event
from portway.wire.codes import Reason, SessionCode
from portway.wire.errors import ProtocolError
from portway.wire.frames import MAX_CONTROL_PAYLOAD
from portway.wire.messages import (
    ChannelHello,
    ControlHello,
    DesiredState,
    Goodbye,
    Message,
    ReachOpen,
    Refused,
    Status,
    Welcome,
)

log = logging.getLogger("portway.hub.dataplane")

HEARTBEAT_INTERVAL = 5.0
HEARTBEAT_TIMEOUT = 15.0  # a hung agent is dropped within this
POOL_SIZE = 4
HELLO_TIMEOUT = 10.0
EVENT_POLL_SECONDS = 0.25
STATS_FLUSH_SECONDS = 2.0
RESYNC_SECONDS = 10.0


class DataPlane:
    def __init__(
        self, config: HubConfig, db: Database, clock: Clock, presence: AgentPresence
    ) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.presence = presence
        self.snapshot = routes.Snapshot(routes={}, binds={}, agent_workspaces={})
        self.traffic = Traffic()
        self.endpoint: AgentEndpoint | None = None
        self._server: FramedServer | None = None
        self._sessions: dict[str, AgentSession] = {}
        self._by_agent: defaultdict[uuid.UUID, list[AgentSession]] = defaultdict(list)
        self._pushed: dict[str, tuple[Any, ...]] = {}
        self._ports: dict[uuid.UUID, PublicPort | UdpPort] = {}
        self._port_errors: dict[uuid.UUID, str] = {}
        self._statuses: dict[uuid.UUID, tuple[TunnelStatus, str | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.pairing = Pairing(
            snapshot=lambda: self.snapshot, serving=self._serving, traffic=self.traffic,
            clock=clock, on_target=self._target_result, spawn=self._spawn,
        )  # fmt: skip
        self.udp = UdpContext(
            open_channel=self.pairing.open_channel, route=self._route, traffic=self.traffic,
            clock=clock, spawn=self._spawn, unavailable=Unavailable,
        )  # fmt: skip
        self.pairing.udp_reach = lambda s, m, r: reach_udp(self.udp, s, m, r)
        self.guests = Guests(db, clock)  # `portway join` sessions authenticated by a share
        self.pairing.on_reach_splice = self.guests.track
        self._last_seq = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the snapshot, bind the agent port and public ports, start background loops."""
        context, endpoint = agent_endpoint(self.config)
        await self._refresh()
        listen = self.config.agent_listen
        self._server = await serve(self._accept, listen.host, listen.port, ssl_context=context)
        self.endpoint = endpoint.on_port(self._server.port)
        self._loops = [
            asyncio.create_task(self._watch_events(), name="portway-events"),
            asyncio.create_task(self._flush_loop(), name="portway-stats"),
            asyncio.create_task(self.guests.run(), name="portway-guests"),
        ]
        log.info(
            "agent endpoint listening",
            extra={"port": self.endpoint.port, "tls": self.endpoint.tls},
        )

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for session in list(self._sessions.values()):
            with contextlib.suppress(ConnectionClosed):
                session.control.send(Goodbye(SessionCode.SHUTTING_DOWN, "hub is stopping"))
            session.close()
        for tunnel_id in list(self.traffic.live):
            self.traffic.reset(tunnel_id, Reason.CLOSED)
        for port in list(self._ports.values()):
            await port.close()
        self._ports.clear()
        if self._server is not None:
            await self._server.aclose()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self._flush()

    def _route(self, tunnel_id: uuid.UUID) -> routes.Route | None:
        return self.snapshot.routes.get(tunnel_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- agent endpoint ----------------------------------------------------------------------

    async def _accept(self, conn: FramedConnection) -> None:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                hello = await conn.recv()
        except (TimeoutError, ProtocolError, ConnectionClosed) as exc:
            self._refuse(conn, SessionCode.BAD_HELLO, f"no valid hello: {exc}")
            return
        if isinstance(hello, ControlHello):
            await self._control(conn, hello)
        elif isinstance(hello, ChannelHello):
            self._channel(conn, hello)
        else:
            self._refuse(conn, SessionCode.BAD_HELLO, "the first frame must be a hello")

    @staticmethod
    def _refuse(conn: FramedConnection, code: SessionCode, message: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            conn.send(Refused(code, message))
        conn.close()

    def _channel(self, conn: FramedConnection, hello: ChannelHello) -> None:
        session = self._sessions.get(hello.session)
        if session is None:
            self._refuse(conn, SessionCode.UNKNOWN_SESSION, "no live session with that id")
        elif hello.secret is None or not hmac.compare_digest(hello.secret, session.secret):
            self._refuse(conn, SessionCode.BAD_SECRET, "channel secret does not match")
        else:
            session.add_channel(conn)

    async def _control(self, conn: FramedConnection, hello: ControlHello) -> None:
        now = self.clock.now()
        guest: Guest | None = None
        identity = (uuid.uuid4(), uuid.uuid4(), "", "")
        if hello.token.startswith(SHARE_TOKEN_PREFIX):  # a `portway join` guest
            admitted = await self.guests.admit(hello.token)
            if not isinstance(admitted, Guest):
                self._refuse(conn, *admitted)
                return
            guest = admitted
            identity = (uuid.uuid4(), guest.workspace_id, guest.name, "")
        async with self.db.session() as db:
            agent = None if guest else await agents.authenticate(db, hello.token)
            if agent is not None:
                agent.last_seen_at = now
                agent.version = (hello.software or None) and hello.software[:64]
                await events.append(
                    db, agent.workspace_id, "agent.connected", str(agent.id),
                    {"agentId": str(agent.id), "name": agent.name, "hostname": hello.hostname},
                    now,
                )  # fmt: skip
                identity = (agent.id, agent.workspace_id, agent.name, agent.token_hash)
        if agent is None and guest is None:
            self._refuse(
                conn, SessionCode.UNKNOWN_TOKEN,
                "the hub does not know this agent token (revoked, rotated or from another hub); "
                "run 'portway up' again after 'portway login'",
            )  # fmt: skip
            return
        agent_id, workspace_id, name, token_hash = identity
        conn.reader.frames.max_payload = MAX_CONTROL_PAYLOAD
        session = AgentSession(
            agent_id=agent_id, workspace_id=workspace_id, agent_name=name, control=conn,
            features=frozenset(hello.features), pool_size=POOL_SIZE,
        )  # fmt: skip
        session.token_hash = token_hash
        if guest is not None:
            peer = conn.transport.get_extra_info("peername") if conn.transport else None
            guest.remote_addr = str(peer[0]) if peer else ""
            self.guests.attach(guest, session)
        self._sessions[session.id] = session
        self._by_agent[agent_id].append(session)
        self.presence.add(agent_id, uuid.UUID(session.id))
        conn.send(
            Welcome(
                session=session.id, agent=str(agent_id), heartbeat_interval=HEARTBEAT_INTERVAL,
                heartbeat_timeout=HEARTBEAT_TIMEOUT, channel_secret=session.secret,
                pool_size=POOL_SIZE,
            )
        )  # fmt: skip
        log.info("agent connected", extra={"agent": name, "session": session.id})
        self._push(session)
        self._spawn(self._sync_statuses())
        code = SessionCode.UNKNOWN
        try:
            code = await run_control(
                conn, lambda m: self._on_message(session, m),
                interval=HEARTBEAT_INTERVAL, dead_after=HEARTBEAT_TIMEOUT,
            )  # fmt: skip
        finally:
            self._end_session(session, code)

    def _end_session(self, session: AgentSession, code: SessionCode) -> None:
        self._sessions.pop(session.id, None)
        self.guests.forget(session)
        with contextlib.suppress(ValueError):
            self._by_agent[session.agent_id].remove(session)
        if not self._by_agent[session.agent_id]:
            del self._by_agent[session.agent_id]
        self._pushed.pop(session.id, None)
        self.presence.remove(session.agent_id, uuid.UUID(session.id))
        session.close()
        log.info("agent disconnected", extra={"agent": session.agent_name, "reason": code.value})
        self._spawn(self._after_disconnect(session, code))

    async def _after_disconnect(self, session: AgentSession, code: SessionCode) -> None:
        now = self.clock.now()
        async with self.db.session() as db:
            agent = await db.get(Agent, session.agent_id)
            if agent is not None:
                agent.last_seen_at = now
                await events.append(
                    db, session.workspace_id, "agent.disconnected", str(session.agent_id),
                    {"agentId": str(session.agent_id), "name": session.agent_name,
                     "reason": code.value},
                    now,
                )  # fmt: skip
        await self._sync_statuses()

    async def _on_message(self, session: AgentSession, message: Message) -> None:
        if isinstance(message, Status):
            for target in message.targets:
                session.targets[target.tunnel] = (target.ok, target.message)
            if message.binds:
                self._spawn(self._record_binds(message))
            self._spawn(self._sync_statuses())
        elif isinstance(message, ReachOpen) and self.guests.is_guest(session):
            self._spawn(self.guests.reach(session, message, self.pairing.reach))
        elif isinstance(message, ReachOpen):
            self._spawn(self.pairing.reach(session, message))

    async def _record_binds(self, status: Status) -> None:
        now = self.clock.now()
        async with self.db.session() as db:
            for bind in status.binds:
                with contextlib.suppress(ValueError):
                    await connections.set_status(
                        db, uuid.UUID(bind.bind), "bound" if bind.ok else "error",
                        None if bind.ok else bind.message[:500], now=now,
                    )  # fmt: skip

    # -- desired state -----------------------------------------------------------------------

    def _desired(self, session: AgentSession) -> tuple[Any, ...]:
        snap = self.snapshot
        specs = (
            tuple(sorted((r.spec() for r in snap.tunnels_of(session.agent_id)), key=str))
            if session.serves
            else ()
        )
        binds: tuple[Any, ...] = ()
        if FEATURE_BINDS in session.features and self._bind_holder(session.agent_id) is session:
            binds = tuple(sorted((b.spec(r) for b, r in snap.binds_of(session.agent_id)), key=str))
        return specs, binds

    def _bind_holder(self, agent_id: uuid.UUID) -> AgentSession | None:
        """API-created binds go to one session per agent (the oldest that accepts them)."""
        for session in self._by_agent.get(agent_id, ()):
            if FEATURE_BINDS in session.features:
                return session
        return None

    def _push(self, session: AgentSession) -> None:
        desired = self._desired(session)
        if self._pushed.get(session.id) == desired:
            return
        self._pushed[session.id] = desired
        session.revision += 1
        with contextlib.suppress(ConnectionClosed):
            session.control.send(
                DesiredState(revision=session.revision, tunnels=desired[0], binds=desired[1])
            )

    # -- pairing -----------------------------------------------------------------------------

    def _serving(self, agent_id: uuid.UUID) -> list[AgentSession]:
        return [s for s in self._by_agent.get(agent_id, ()) if s.serves and not s.closed]

    def _target_result(
        self, session: AgentSession, tunnel_id: uuid.UUID, ok: bool, message: str
    ) -> None:
        key = str(tunnel_id)
        if session.targets.get(key, (None, ""))[0] != ok:
            session.targets[key] = (ok, message)
            self._spawn(self._sync_statuses())

    # -- snapshot, statuses, counters ----------------------------------------------------------

    async def _watch_events(self) -> None:
        loop = asyncio.get_running_loop()
        last_full = loop.time()
        while True:
            await asyncio.sleep(EVENT_POLL_SECONDS)
            try:
                async with self.db.session() as db:
                    seq = int(await db.scalar(select(func.max(Event.seq))) or 0)
                if seq != self._last_seq or loop.time() - last_full > RESYNC_SECONDS:
                    self._last_seq = seq
                    last_full = loop.time()
                    await self._refresh()
            except Exception:
                log.exception("refreshing tunnel state failed; retrying")

    async def _refresh(self) -> None:
        async with self.db.session() as db:
            snap = await routes.load(db)
            agent_hashes = {a.id: a.token_hash for a in (await db.scalars(select(Agent))).all()}
        old, self.snapshot = self.snapshot, snap
        for tunnel_id, before in old.routes.items():
            after = snap.routes.get(tunnel_id)
            if after is None:
                self.traffic.reset(tunnel_id, Reason.CLOSED)
            elif after.paused and not before.paused:
                self.traffic.reset(tunnel_id, Reason.PAUSED)
            elif (after.host, after.port) != (before.host, before.port):
                self.traffic.reset(tunnel_id, Reason.CLOSED)
        await self._sync_ports()
        for session in list(self._sessions.values()):
            if self.guests.is_guest(session):
                continue  # checked by `Guests.run` against its share
            if agent_hashes.get(session.agent_id) != session.token_hash:
                code = (
                    SessionCode.REVOKED
                    if session.agent_id not in agent_hashes
                    else SessionCode.ROTATED
                )
                with contextlib.suppress(ConnectionClosed):
                    session.control.send(Goodbye(code, "this agent's token is no longer valid"))
                session.control.close()
                continue
            self._push(session)
        await self._sync_statuses()

    async def _sync_ports(self) -> None:
        wanted = {
            r.id: r.hub_port
            for r in self.snapshot.routes.values()
            if r.public and r.hub_port is not None
        }
        for tunnel_id, port in list(self._ports.items()):
            if wanted.get(tunnel_id) != port.port:
                await port.close()
                del self._ports[tunnel_id]
        for tunnel_id in list(self._port_errors):
            if tunnel_id not in wanted:
                del self._port_errors[tunnel_id]
        # Hub ports are public listeners, like the edge: they bind where the edge binds.
        host = self.config.edge_listen.host
        for tunnel_id, hub_port in wanted.items():
            if tunnel_id in self._ports:
                continue
            listener: PublicPort | UdpPort
            if self.snapshot.routes[tunnel_id].protocol == "udp":
                listener = UdpPort(tunnel_id, host, hub_port, self.udp)
            else:
                listener = PublicPort(
                    tunnel_id, host, hub_port, lambda tid: self.pairing.visitor(tid).a
                )
            try:
                await listener.open()
            except OSError as exc:
                self._port_errors[tunnel_id] = (
                    f"cannot listen on hub port {hub_port}: {exc.strerror or exc}"
                )
                continue
            self._port_errors.pop(tunnel_id, None)
            self._ports[tunnel_id] = listener

    def _status_of(self, route: routes.Route) -> tuple[TunnelStatus, str | None]:
        if route.id in self._port_errors:
            return "error", self._port_errors[route.id]
        serving = self._serving(route.agent_id)
        if not serving:
            return "connecting", "no agent session is serving this tunnel"
        # Sessions that have not probed this target yet do not count: a process joining an
        # agent's identity must not flip a failing tunnel to active before it has looked.
        reports = [r for s in serving if (r := s.targets.get(str(route.id))) is not None]
        if reports and not any(ok for ok, _ in reports):
            return "error", reports[0][1] or "the agent cannot reach the target"
        return "active", None

    async def _sync_statuses(self) -> None:
        now = self.clock.now()
        changes: list[tuple[uuid.UUID, tuple[TunnelStatus, str | None]]] = []
        for route in self.snapshot.routes.values():
            if route.paused:
                self._statuses.pop(route.id, None)
                continue
            observed = self._status_of(route)
            if self._statuses.get(route.id) != observed:
                changes.append((route.id, observed))
        if not changes:
            return
        async with self.db.session() as db:
            for tunnel_id, (status, reason) in changes:
                await tunnels.set_status(db, tunnel_id, status, reason, now=now)
        self._statuses.update(changes)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(STATS_FLUSH_SECONDS)
            try:
                await self._flush()
            except Exception:
                log.exception("writing traffic counters failed; they will be retried")

    async def _flush(self) -> None:
        deltas = self.traffic.drain()
        if not deltas:
            return
        async with self.db.session() as db:
            for tunnel_id, d in deltas.items():
                await tunnels.add_stats(
                    db, tunnel_id, opened=d.opened, closed=d.closed, bytes_in=d.bytes_in,
                    bytes_out=d.bytes_out, last_connection_at=d.last_connection_at,
                    datagrams_in=d.datagrams_in, datagrams_out=d.datagrams_out,
                    datagrams_dropped=d.datagrams_dropped,
                )  # fmt: skip
