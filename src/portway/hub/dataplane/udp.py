"""UDP tunnels on the hub: public UDP hub ports, and reach sessions between two agents.

`HubPorts.sync` (`hub_ports.py`) opens a `UdpPort` for every public UDP tunnel with a hub
port, as it opens a `PublicPort` for TCP. `Pairing.reach` hands a `reach_open` for a UDP tunnel
to `reach_udp`. Every session (one per visitor address, or one per reaching agent's local client)
is a `portway.net.udp.UdpSession` registered with `Traffic`, so pausing or deleting the tunnel
ends it (CLOSE with the reason), and its datagram counters reach the store in the usual batches.
The hub ends a session after the tunnel's idle timeout (`Route.udp_idle_timeout`); the agents
end theirs when the channel closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from portway.domain.clock import Clock
from portway.hub.dataplane import routes
from portway.hub.dataplane.channels import ChannelOpener, TunnelUnavailable, reaching_channel
from portway.hub.dataplane.sessions import AgentSession
from portway.hub.dataplane.traffic import Traffic
from portway.net.framed import ConnectionClosed
from portway.net.udp import Address, DatagramChannel, UdpSession, UdpSessionTable
from portway.wire.codes import Reason
from portway.wire.control_messages import ReachOpen, ReachReject

log = logging.getLogger("portway.hub.udp")

MAX_SESSIONS = 10_000  # per hub port: each session holds a data channel and an agent socket


@dataclass(frozen=True)
class UdpContext:
    """What UDP sessions need from the data plane; built once by `DataPlane`."""

    channels: ChannelOpener
    table: routes.RouteTable
    traffic: Traffic
    clock: Clock
    spawn: Callable[[Coroutine[Any, Any, Any]], None]


class UdpPort:
    """One public UDP tunnel's hub port; same interface as `PublicPort` (port, open, close)."""

    def __init__(self, tunnel_id: uuid.UUID, host: str, port: int, ctx: UdpContext) -> None:
        self.tunnel_id = tunnel_id
        self.host = host
        self.port = port
        self._ctx = ctx
        self._table: UdpSessionTable | None = None

    async def open(self) -> None:
        """Bind the port; raises OSError (port taken, no permission) for the caller to report."""
        table = UdpSessionTable(
            self._open_session, idle_timeout=self._idle_timeout, on_closed=self._closed
        )
        await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: table, local_addr=(self.host, self.port)
        )
        self._table = table

    async def close(self) -> None:
        """Stop listening (the port is free at once) and end every session of this port."""
        table, self._table = self._table, None
        if table is not None:
            table.close(Reason.CLOSED)
            await table.wait_closed()

    @property
    def sessions(self) -> int:
        return 0 if self._table is None else len(self._table.sessions)

    def _idle_timeout(self) -> float:
        route = self._ctx.table.route(self.tunnel_id)
        return routes.DEFAULT_UDP_IDLE_TIMEOUT if route is None else route.udp_idle_timeout

    def _open_session(self, session: UdpSession) -> bool:
        ctx = self._ctx
        route = ctx.table.route(self.tunnel_id)
        if route is None or route.paused or self.sessions >= MAX_SESSIONS:
            ctx.traffic.dropped(self.tunnel_id)
            return False
        ctx.traffic.opened(self.tunnel_id, session, ctx.clock.now())
        ctx.spawn(self._pair(session))
        return True

    async def _pair(self, session: UdpSession) -> None:
        try:
            transport, rest, _route = await self._ctx.channels.open_channel(
                self.tunnel_id, _conn_id()
            )
        except TunnelUnavailable as exc:
            session.reset(exc.reason)
            return
        session.attach(transport, rest)

    def _closed(self, session: UdpSession) -> None:
        self._ctx.traffic.closed(self.tunnel_id, session)


def _conn_id() -> str:
    return uuid.uuid4().hex


async def reach_udp(
    ctx: UdpContext, session: AgentSession, request: ReachOpen, route: routes.Route
) -> None:
    """Serve one `reach_open` for a UDP tunnel: the reaching agent's channel (one local client's
    session) is relayed datagram by datagram to a channel the exposing agent dialled.

    Called by `Pairing.reach` once the route is known and allowed. Both channels are assigned
    concurrently; the reaching side's datagrams are held (bounded) until the exposing side is
    ready. The hub counts and expires the session; a CLOSE from either agent ends both.
    """
    reaching: DatagramChannel | None = None

    def to_reacher(datagram: memoryview, _address: Address | None) -> bool:
        return reaching is not None and reaching.send(datagram)

    def ended(udp: UdpSession) -> None:
        if reaching is not None:
            reaching.close(udp.result or Reason.CLOSED)
        ctx.traffic.closed(route.id, udp)

    udp = UdpSession(None, to_reacher, ended, idle_timeout=route.udp_idle_timeout)

    async def attach_reaching() -> None:
        nonlocal reaching
        channel = await reaching_channel(session, request, route, udp)
        if channel is not None:
            reaching = DatagramChannel(udp.from_sender, udp.reset)
            reaching.attach(*channel)

    reach_task = asyncio.create_task(attach_reaching())
    try:
        transport, rest, _route = await ctx.channels.open_channel(route.id, request.conn)
    except TunnelUnavailable as exc:
        udp.reset(exc.reason)
        with contextlib.suppress(ConnectionClosed):
            session.control.send(ReachReject(request.conn, exc.reason, str(exc)))
    else:
        if udp.open:
            ctx.traffic.opened(route.id, udp, ctx.clock.now())
        udp.attach(transport, rest)
    await reach_task
