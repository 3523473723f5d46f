"""Pairing a visitor (public port or reach connection) with a stream dialled by the agent.

`DataPlane` owns one `Pairing`; public ports call `visitor()`, the control-session handler
calls `reach()`. The only awaits are per connection (waiting for the agents' answers), never
per chunk: once paired, the splice relays on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, cast

from portway.domain.clock import Clock
from portway.hub.dataplane import routes
from portway.hub.dataplane.sessions import AgentSession, NoChannel, assign
from portway.hub.dataplane.traffic import Traffic
from portway.net.framed import ConnectionClosed
from portway.net.mux_bridge import StreamBridge
from portway.net.mux_socket import SocketStream, hand_over
from portway.net.mux_transport import StreamTransport
from portway.wire.codes import Reason
from portway.wire.messages import (
    Assign,
    AssignError,
    AssignMode,
    Protocol,
    ReachOpen,
    ReachReject,
)

log = logging.getLogger("portway.hub.pairing")

BIND_PREFIX = "tunnel:"  # a reach bind an agent holds on its own (`portway reach`)


class Unavailable(Exception):
    """No channel to the tunnel's target could be had; `reason` and `message` say why."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Pairing:
    def __init__(
        self,
        *,
        snapshot: Callable[[], routes.Snapshot],
        serving: Callable[[uuid.UUID], list[AgentSession]],
        traffic: Traffic,
        clock: Clock,
        on_target: Callable[[AgentSession, uuid.UUID, bool, str], None],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self._snapshot = snapshot
        self._serving = serving
        self._traffic = traffic
        self._clock = clock
        self._on_target = on_target
        self._spawn = spawn
        self.udp_reach: (
            Callable[[AgentSession, ReachOpen, routes.Route], Coroutine[Any, Any, None]] | None
        ) = None
        """Serves reach for UDP tunnels (`hub.dataplane.udp.reach_udp`); set by `DataPlane`."""
        # Told about every reach splice (guest sessions' connections are ended on revocation).
        self.on_reach_splice: Callable[[AgentSession, StreamBridge], None] | None = None

    def visitor(self, tunnel_id: uuid.UUID) -> SocketStream:
        """The protocol of a visitor on a public port; its stream is dialled in the background
        (what the visitor sends meanwhile is held)."""
        visitor = SocketStream(on_close=lambda s: self._traffic.closed(tunnel_id, s))
        self._spawn(self.dial(tunnel_id, visitor, uuid.uuid4().hex))
        return visitor

    async def open_channel(
        self,
        tunnel_id: uuid.UUID,
        conn_id: str,
        *,
        tls: bool = False,
    ) -> tuple[asyncio.Transport, bytes, routes.Route]:
        """A stream the tunnel's agent has dialled to the target, as a transport detached from
        its `assign` framing, with the target's bytes already read after `assign_ok`; raises
        `Unavailable`.

        The caller (a splice here, or the HTTP edge) must take over the transport at once,
        with no await in between, by setting its own protocol. `tls` (the HTTP edge, for an
        https tunnel) asks the exposing agent to speak TLS to the target itself.
        """
        route = self._snapshot().routes.get(tunnel_id)
        if route is None:
            raise Unavailable(Reason.CLOSED, "the tunnel does not exist (deleted?)")
        if route.paused:
            raise Unavailable(Reason.PAUSED, f"tunnel {route.name} is paused")
        serving = self._serving(route.agent_id)
        if not serving:
            raise Unavailable(Reason.UNAVAILABLE, _why(route, Reason.UNAVAILABLE))
        session = min(serving, key=lambda s: s.load)
        message = Assign(
            conn=conn_id, mode=AssignMode.DIAL, tunnel=str(route.id),
            protocol=route.wire_protocol, host=route.host, port=route.port,
        )  # fmt: skip
        if tls and route.protocol == "https":
            message = dataclasses.replace(
                message, protocol=Protocol.HTTPS, tls_verify=None if route.tls_verify else False
            )
        try:
            channel, answer = await assign(session, message)
        except NoChannel as exc:
            log.warning("cannot pair connection", extra={"tunnel": route.name, "error": str(exc)})
            raise Unavailable(Reason.UNAVAILABLE, _why(route, Reason.UNAVAILABLE)) from None
        if isinstance(answer, AssignError):
            channel.close()
            self._on_target(session, route.id, False, answer.message)
            raise Unavailable(answer.reason, answer.message or _why(route, answer.reason))
        self._on_target(session, route.id, True, "")
        transport, rest = channel.detach()
        return transport, rest, route

    async def dial(
        self, tunnel_id: uuid.UUID, relay: SocketStream | StreamBridge, conn_id: str
    ) -> bool:
        """Join `relay` (a visitor's socket, or end `b` of a reach bridge) to a stream the
        tunnel's agent dialled to the target."""
        try:
            transport, rest, route = await self.open_channel(tunnel_id, conn_id)
        except Unavailable as exc:
            relay.reset(exc.reason)
            return False
        if not relay.open:
            transport.abort()  # the visitor left while we dialled
            return False
        hand_over(relay, transport, rest)
        self._traffic.opened(route.id, relay, self._clock.now())
        return True

    async def reach(self, session: AgentSession, request: ReachOpen) -> None:
        """Serve one `reach_open`: assign a channel of the reaching agent and one dialled by
        the exposing agent, concurrently, and bridge the two streams."""
        route = self._reach_route(session, request.bind)
        if isinstance(route, tuple):
            with contextlib.suppress(ConnectionClosed):
                session.control.send(ReachReject(request.conn, *route))
            return
        if route.wire_protocol is Protocol.UDP and self.udp_reach is not None:
            await self.udp_reach(session, request, route)
            return
        tunnel_id = route.id
        splice = StreamBridge(on_close=lambda b: self._traffic.closed(tunnel_id, b))
        if self.on_reach_splice is not None:
            self.on_reach_splice(session, splice)
        reaching = Assign(
            conn=request.conn, mode=AssignMode.REACH, tunnel=str(route.id),
            protocol=route.wire_protocol, host=route.host, port=route.port,
        )  # fmt: skip

        async def attach_reaching() -> None:
            try:
                channel, answer = await assign(session, reaching)
            except NoChannel:
                splice.reset(Reason.UNAVAILABLE)
                return
            if isinstance(answer, AssignError) or not splice.open:
                channel.close()
                splice.reset(answer.reason if isinstance(answer, AssignError) else Reason.GONE)
                return
            transport, rest = channel.detach()
            splice.join(splice.a, cast(StreamTransport, transport).release(), rest)

        reach_task = asyncio.create_task(attach_reaching())
        if not await self.dial(route.id, splice, request.conn):
            reason = splice.result or Reason.UNAVAILABLE
            with contextlib.suppress(ConnectionClosed):
                session.control.send(ReachReject(request.conn, reason, _why(route, reason)))
        await reach_task

    def _reach_route(self, session: AgentSession, bind: str) -> routes.Route | tuple[Reason, str]:
        """The tunnel a reach bind leads to, if this session may use it; else why not."""
        snap = self._snapshot()
        route: routes.Route | None = None
        if bind.startswith(BIND_PREFIX):
            with contextlib.suppress(ValueError):
                route = snap.routes.get(uuid.UUID(bind.removeprefix(BIND_PREFIX)))
            if route is not None and route.workspace_id != session.workspace_id:
                route = None
        else:
            with contextlib.suppress(ValueError):
                found = snap.binds.get(uuid.UUID(bind))
                if found is not None and found.agent_id == session.agent_id:
                    route = snap.routes.get(found.tunnel_id)
        if route is None:
            return Reason.CLOSED, "the tunnel does not exist (deleted?)"
        if route.paused:
            return Reason.PAUSED, f"tunnel {route.name} is paused"
        return route


def _why(route: routes.Route, reason: Reason) -> str:
    return {
        Reason.TARGET_REFUSED: f"the target of {route.name} refused the connection",
        Reason.TARGET_UNREACHABLE: f"the target of {route.name} is unreachable",
        Reason.TARGET_TIMEOUT: f"the target of {route.name} did not answer in time",
        Reason.DENIED: f"the exposing agent's policy denies the target of {route.name}",
        Reason.PAUSED: f"tunnel {route.name} is paused",
        Reason.UNAVAILABLE: f"no agent is serving {route.name} right now",
    }.get(reason, f"connection to {route.name} failed")
