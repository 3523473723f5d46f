"""Pairing a visitor (public port or reach connection) with a stream dialled by the agent.

`DataPlane` owns one `Pairing`; public ports call `visitor()`, the control-session handler
calls `reach()` (a UDP tunnel's reach goes on to `udp.reach_udp`). The exposing agent's side
of each comes from `channels.TargetChannels`. A public visitor is paired in
callbacks, with no task: its stream opens in the protocol factory with the `assign` on the SYN,
the visitor's bytes follow as they come (to an agent that holds them, `FEATURE_EARLY_DATA`)
and the agent's answer is read off the stream's first bytes (`_Answer`). Elsewhere the only
awaits are per connection (waiting for the agents' answers), never per chunk: once paired, the
relay runs on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Callable
from typing import Protocol as Interface
from typing import cast

from portway.domain.clock import Clock
from portway.hub.dataplane import routes
from portway.hub.dataplane.channels import (
    TargetChannels,
    TunnelUnavailable,
    dial_message,
    e2e_peers,
    reaching_channel,
)
from portway.hub.dataplane.direct_grants import DirectGrants
from portway.hub.dataplane.sessions import ASSIGN_TIMEOUT_SECONDS, AgentSession, NoChannel
from portway.hub.dataplane.traffic import Traffic
from portway.hub.dataplane.udp import UdpContext, reach_udp
from portway.net import identity
from portway.net.framed import ConnectionClosed
from portway.net.mux_bridge import StreamBridge
from portway.net.mux_opening import FirstMessage
from portway.net.mux_socket import SocketStream, hand_over
from portway.net.mux_stream import MuxStream
from portway.net.mux_transport import StreamTransport
from portway.wire.assignment_messages import AssignError, AssignOk
from portway.wire.codes import Reason
from portway.wire.control_messages import (
    FEATURE_DIRECT,
    FEATURE_EARLY_DATA,
    Protocol,
    ReachOpen,
    ReachReject,
)
from portway.wire.messages import Message, encode

log = logging.getLogger("portway.hub.pairing")

BIND_PREFIX = "tunnel:"  # a reach bind an agent holds on its own (`portway reach`)
AGENT_URI = identity.agent_uri("")  # the prefix of an agent's identity, not a guest's


class ReachSplices(Interface):
    """Told about every reach splice (`Guests`: a guest's connections end on revocation)."""

    def track(self, session: AgentSession, splice: StreamBridge) -> None: ...


class Pairing:
    def __init__(
        self,
        channels: TargetChannels,
        table: routes.RouteTable,
        traffic: Traffic,
        clock: Clock,
        *,
        udp: UdpContext,
        splices: ReachSplices,
        grants: DirectGrants,
        granted: Callable[[uuid.UUID], None],
    ) -> None:
        self._channels = channels
        self._table = table
        self._traffic = traffic
        self._clock = clock
        self._udp = udp
        self._splices = splices
        self._grants = grants
        self._granted = granted  # an agent's tunnel has a new direct peer: push its state
        # A visitor's connection id: unique on this hub without a uuid4 (a syscall) per visitor.
        self._conn_prefix = uuid.uuid4().hex[:16]
        self._conn_count = itertools.count(1)

    def visitor(self, tunnel_id: uuid.UUID) -> SocketStream:
        """The protocol of a visitor on a public port (`PublicPort`'s factory). Its stream
        opens at once with the `assign` on the SYN; the visitor's bytes follow it with no wait
        when the agent holds them (`FEATURE_EARLY_DATA`; the SYN is framed after the loop's
        next reads, so the first ones usually ride on it), else they are held here until the
        agent's answer. No agent, a paused or missing tunnel: the visitor is reset."""
        visitor = SocketStream(on_close=lambda s: self._traffic.closed(tunnel_id, s))
        conn_id = f"{self._conn_prefix}{next(self._conn_count):x}"
        try:
            route, session = self._channels.serving_session(tunnel_id)
        except TunnelUnavailable as exc:
            visitor.reset(exc.reason)
            return visitor
        early = FEATURE_EARLY_DATA in session.features
        try:
            assign_frame = encode(dial_message(route, conn_id, tls=False))
            stream = session.open_stream(assign_frame, after_reads=early)
        except NoChannel as exc:
            log.warning("cannot pair connection", extra={"tunnel": route.name, "error": str(exc)})
            visitor.reset(Reason.UNAVAILABLE)
            return visitor
        if early:
            visitor.link(stream)
        _Answer(self, stream, visitor, route, session, conn_id, early=early)
        return visitor

    async def reach(self, session: AgentSession, request: ReachOpen) -> None:
        """Serve one `reach_open`: assign a channel of the reaching agent and one dialled by
        the exposing agent, concurrently, and bridge the two streams; end to end encrypted
        between the two agents when both can and the tunnel allows it (`e2e_peers`)."""
        route = self._reach_route(session, request.bind)
        if isinstance(route, tuple):
            with contextlib.suppress(ConnectionClosed):
                session.control.send(ReachReject(request.conn, *route))
            return
        if route.wire_protocol is Protocol.UDP:
            await reach_udp(self._udp, session, request, route)
            return
        try:
            route, serving = self._channels.serving_session(route.id)
        except TunnelUnavailable as exc:
            with contextlib.suppress(ConnectionClosed):
                session.control.send(ReachReject(request.conn, exc.reason, str(exc)))
            return
        peers = e2e_peers(route, session, serving)
        candidates = self._direct_candidates(route, session, serving) if peers else None
        tunnel_id = route.id
        splice = StreamBridge(on_close=lambda b: self._traffic.closed(tunnel_id, b))
        self._splices.track(session, splice)

        async def attach_reaching() -> None:
            peer = peers[0] if peers else None
            reaching = await reaching_channel(
                session, request, route, splice, peer=peer, candidates=candidates
            )
            if reaching is not None:
                transport, rest = reaching
                splice.join(splice.a, cast(StreamTransport, transport).release(), rest)

        reach_task = asyncio.create_task(attach_reaching())
        message = dial_message(route, request.conn, tls=False, peer=peers[1] if peers else None)
        try:
            transport, rest = await self._channels.dial(route, serving, message)
        except TunnelUnavailable as exc:
            splice.reset(exc.reason)
            with contextlib.suppress(ConnectionClosed):
                session.control.send(ReachReject(request.conn, exc.reason, str(exc)))
        else:
            if splice.open:
                hand_over(splice, transport, rest)
                self._traffic.opened(route.id, splice, self._clock.now())
            else:
                transport.abort()  # the reaching side left while the target was dialled
        await reach_task

    def _direct_candidates(
        self, route: routes.Route, reaching: AgentSession, serving: AgentSession
    ) -> tuple[str, ...] | None:
        """The exposing agent's candidates for an end-to-end reach, when both agents take part
        in the direct path; the reaching agent is granted the tunnel first (protocol.md §21),
        so the exposing agent hears of it before the reaching one can connect. A guest gets
        none: its share's rate limit and access log are the hub's to apply, on each
        connection it relays."""
        if not serving.candidates or not {FEATURE_DIRECT} <= reaching.features & serving.features:
            return None
        if reaching.identity_uri is None or not reaching.identity_uri.startswith(AGENT_URI):
            return None
        if self._grants.grant(route.id, reaching):
            self._granted(route.agent_id)
        return serving.candidates

    def _reach_route(self, session: AgentSession, bind: str) -> routes.Route | tuple[Reason, str]:
        """The tunnel a reach bind leads to, if this session may use it; else why not."""
        snap = self._table.snapshot
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


class _Answer(FirstMessage):
    """A public visitor's stream until the agent answers its `assign` (made by
    `Pairing.visitor`): reads `assign_ok` or `assign_error` off the stream's first bytes.

    On `assign_ok` the visitor's socket becomes the stream's sink (it was linked already when
    the agent holds early bytes, else it joins now with what it held), and `Traffic` counts it;
    on `assign_error` the visitor is reset with the agent's reason. Either answer tells
    `on_target` how the target is, as `open_channel` does. No answer within
    `ASSIGN_TIMEOUT_SECONDS`, the stream ended or reset first, or a wrong answer: the visitor is
    reset with `unavailable`. A visitor that leaves before the answer resets a linked stream
    itself (`SocketStream.connection_lost`), which frees it at once.
    """

    __slots__ = ("conn", "early", "pairing", "route", "session", "timer", "visitor")

    def __init__(
        self,
        pairing: Pairing,
        stream: MuxStream,
        visitor: SocketStream,
        route: routes.Route,
        session: AgentSession,
        conn: str,
        *,
        early: bool,
    ) -> None:
        self.pairing = pairing
        self.visitor = visitor
        self.route = route
        self.session = session
        self.conn = conn
        self.early = early
        loop = stream.connection.loop
        self.timer = loop.call_later(ASSIGN_TIMEOUT_SECONDS, self._timed_out)
        # A linked visitor writes into the stream already: its queue's pressure pauses it.
        super().__init__(stream, visitor if early else None)

    def message_received(self, message: Message) -> None:
        self.timer.cancel()
        pairing, stream, visitor, route = self.pairing, self.stream, self.visitor, self.route
        if isinstance(message, AssignOk) and message.conn == self.conn:
            pairing._channels.on_target(self.session, route.id, True, "")
            if not visitor.open:
                stream.reset(Reason.RESET)  # the visitor left while the agent dialled
                return
            if self.early:
                stream.attach(visitor)  # what followed the answer first, then what follows
            else:
                visitor.join(stream)  # and its held bytes go out now
            pairing._traffic.opened(route.id, visitor, pairing._clock.now())
        elif isinstance(message, AssignError) and message.conn == self.conn:
            stream.reset(message.reason)
            pairing._channels.on_target(self.session, route.id, False, message.message)
            visitor.reset(message.reason)
        else:
            self._unpaired(f"agent {self.session.agent_name} answered the assign with {message!r}")

    def ended(self, reason: Reason | None) -> None:
        self.timer.cancel()
        how = "ended" if reason is None else f"reset ({reason.value})"
        self._unpaired(f"agent {self.session.agent_name} {how} the stream of an assignment")

    def _timed_out(self) -> None:
        stream = self.stream
        if stream.connection.streams.get(stream.id) is stream:  # else the visitor reset it
            self._unpaired(f"agent {self.session.agent_name} did not answer an assignment")

    def _unpaired(self, error: str) -> None:
        log.warning("cannot pair connection", extra={"tunnel": self.route.name, "error": error})
        self.stream.reset(Reason.RESET)
        self.visitor.reset(Reason.UNAVAILABLE)
