"""Channels to a tunnel's target: a stream the serving agent dialled, and the reaching side.

`DataPlane` owns one `TargetChannels`. The HTTP edge and UDP ports call `open_channel()`;
`Pairing` uses it for reach and for the session a public visitor goes to. Both reach paths (TCP
splices and UDP sessions) get the reaching agent's side from `reaching_channel()`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Callable
from typing import Protocol as Interface

from portway import errors
from portway.hub.dataplane import routes
from portway.hub.dataplane.sessions import AgentSession, NoChannel, assign
from portway.wire.assignment_messages import Assign, AssignError, AssignMode
from portway.wire.codes import Reason
from portway.wire.control_messages import Protocol, ReachOpen

log = logging.getLogger("portway.hub.pairing")


class TunnelUnavailable(errors.Unavailable):
    """No channel to the tunnel's target could be had; `reason` and `message` say why.

    Raised by `TargetChannels` (the HTTP edge answers it with an error page, UDP ports and
    `Pairing.dial` reset their visitor with `reason`).
    """

    code = "tunnel_unavailable"

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ChannelOpener(Interface):
    """What the edge and UDP ports need: `TargetChannels`, or a test's stand-in."""

    async def open_channel(
        self, tunnel_id: uuid.UUID, conn_id: str, *, tls: bool = False
    ) -> tuple[asyncio.Transport, bytes, routes.Route]: ...


class ReachEnd(Interface):
    """The hub's end of a reach connection (a `StreamBridge` or a `UdpSession`)."""

    @property
    def open(self) -> bool: ...

    def reset(self, reason: Reason) -> None: ...


# Told how a tunnel's target answered: (session, tunnel id, reachable, the agent's message).
TargetResult = Callable[[AgentSession, uuid.UUID, bool, str], None]


class TargetChannels:
    def __init__(
        self,
        table: routes.RouteTable,
        serving: Callable[[uuid.UUID], list[AgentSession]],
        on_target: TargetResult,
    ) -> None:
        self._table = table
        self._serving = serving
        self.on_target = on_target

    async def open_channel(
        self, tunnel_id: uuid.UUID, conn_id: str, *, tls: bool = False
    ) -> tuple[asyncio.Transport, bytes, routes.Route]:
        """A stream the tunnel's agent has dialled to the target, as a transport detached from
        its `assign` framing, with the target's bytes already read after `assign_ok`; raises
        `TunnelUnavailable`.

        The caller (a splice, a UDP session or the HTTP edge) must take over the transport at
        once, with no await in between, by setting its own protocol. `tls` (the HTTP edge, for
        an https tunnel) asks the exposing agent to speak TLS to the target itself.
        """
        route, session = self.serving_session(tunnel_id)
        transport, rest = await self.dial(route, session, dial_message(route, conn_id, tls=tls))
        return transport, rest, route

    async def dial(
        self, route: routes.Route, session: AgentSession, message: Assign
    ) -> tuple[asyncio.Transport, bytes]:
        """Send `message` (a `dial_message`) to `session`, which serves `route`, and return its
        stream as `open_channel` does once the agent answered; raises `TunnelUnavailable`."""
        try:
            channel, answer = await assign(session, message)
        except NoChannel as exc:
            log.warning("cannot pair connection", extra={"tunnel": route.name, "error": str(exc)})
            raise TunnelUnavailable(Reason.UNAVAILABLE, why(route, Reason.UNAVAILABLE)) from None
        if isinstance(answer, AssignError):
            channel.close()
            self.on_target(session, route.id, False, answer.message)
            raise TunnelUnavailable(answer.reason, answer.message or why(route, answer.reason))
        self.on_target(session, route.id, True, "")
        return channel.detach()

    def serving_session(self, tunnel_id: uuid.UUID) -> tuple[routes.Route, AgentSession]:
        """The tunnel's route and its agent's least-loaded serving session; raises
        `TunnelUnavailable` (no such tunnel, paused, no agent online)."""
        route = self._table.route(tunnel_id)
        if route is None:
            raise TunnelUnavailable(Reason.CLOSED, "the tunnel does not exist (deleted?)")
        if route.paused:
            raise TunnelUnavailable(Reason.PAUSED, f"tunnel {route.name} is paused")
        serving = self._serving(route.agent_id)
        if not serving:
            raise TunnelUnavailable(Reason.UNAVAILABLE, why(route, Reason.UNAVAILABLE))
        return route, min(serving, key=lambda s: s.load)


def dial_message(
    route: routes.Route, conn_id: str, *, tls: bool, peer: str | None = None
) -> Assign:
    """The `assign` that asks the exposing agent to dial the tunnel's target; with `peer`, for
    an end-to-end reach from the agent that URI names (`e2e_peers`)."""
    message = Assign(
        conn=conn_id, mode=AssignMode.DIAL, tunnel=str(route.id),
        protocol=route.wire_protocol, host=route.host, port=route.port, peer=peer,
    )  # fmt: skip
    if tls and route.protocol == "https":
        message = dataclasses.replace(
            message, protocol=Protocol.HTTPS, tls_verify=None if route.tls_verify else False
        )
    return message


def e2e_peers(
    route: routes.Route, reaching: AgentSession, serving: AgentSession
) -> tuple[str, str] | None:
    """Whom each side of an end-to-end reach of `route` must find at the other end (the
    reaching agent's `peer`, the exposing agent's), or None for a relayed one in the clear:
    the tunnel says `{"e2e": false}`, or one of the agents has no certificate (an older agent,
    or a hub answering without `e2e`). Protocol.md §19."""
    if not route.e2e or reaching.identity_uri is None or serving.identity_uri is None:
        return None
    return serving.identity_uri, reaching.identity_uri


async def reaching_channel(
    session: AgentSession,
    request: ReachOpen,
    route: routes.Route,
    end: ReachEnd,
    *,
    peer: str | None = None,
    candidates: tuple[str, ...] | None = None,
) -> tuple[asyncio.Transport, bytes] | None:
    """The reaching agent's side of `request`, detached, or None once `end` is reset: the
    agent could not be asked, refused, or `end` closed while it answered. `peer`: the exposing
    agent it must find at the other end of an end-to-end reach (`e2e_peers`); `candidates`:
    where it may find that agent directly next time (protocol.md §20).

    Runs concurrently with the exposing side's `dial`; the caller attaches the transport to
    `end` before any further await.
    """
    message = Assign(
        conn=request.conn, mode=AssignMode.REACH, tunnel=str(route.id),
        protocol=route.wire_protocol, host=route.host, port=route.port, peer=peer,
        candidates=candidates,
    )  # fmt: skip
    try:
        channel, answer = await assign(session, message)
    except NoChannel:
        end.reset(Reason.UNAVAILABLE)
        return None
    if isinstance(answer, AssignError) or not end.open:
        channel.close()
        end.reset(answer.reason if isinstance(answer, AssignError) else Reason.GONE)
        return None
    return channel.detach()


def why(route: routes.Route, reason: Reason) -> str:
    """What a user is told when a connection to `route` failed for `reason`."""
    return {
        Reason.TARGET_REFUSED: f"the target of {route.name} refused the connection",
        Reason.TARGET_UNREACHABLE: f"the target of {route.name} is unreachable",
        Reason.TARGET_TIMEOUT: f"the target of {route.name} did not answer in time",
        Reason.DENIED: f"the exposing agent's policy denies the target of {route.name}",
        Reason.PAUSED: f"tunnel {route.name} is paused",
        Reason.UNAVAILABLE: f"no agent is serving {route.name} right now",
    }.get(reason, f"connection to {route.name} failed")
