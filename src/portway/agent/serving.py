"""The agent's side of its streams: serving what the hub opens, and local reach clients waiting.

`StreamServing` is the base of `AgentRuntime` (`agent.runtime`) that holds the data side of the
runtime: each stream the hub opens (on any link) starts with an `assign` that is served here
(dial a target through `agent.assigned`, diagnose one, or join a waiting local client), and each
local client of a reach listener is asked for with `reach_open` on the control stream and waits
here, at most `REACH_WAIT`, for the hub's stream. The runtime (the session with the hub) sets the
control stream it asks on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from portway.agent.assigned import ServedTunnels, dial, dial_stream, framed, joins_directly, served
from portway.agent.dialer import Dialer
from portway.agent.direct_dial import HEAD_START, DirectPaths
from portway.agent.end_to_end import EndToEnd, Reporter
from portway.agent.probing import diagnose
from portway.agent.reach import ReachListener
from portway.agent.udp import UdpReachListener
from portway.net.framed import ConnectionClosed, FramedConnection
from portway.net.mux_socket import SocketStream, hand_over
from portway.net.mux_stream import MuxStream
from portway.net.udp import UdpSession
from portway.wire.assignment_messages import Assign, AssignError, AssignMode, AssignOk
from portway.wire.codes import Reason
from portway.wire.control_messages import Protocol, ReachOpen
from portway.wire.errors import ProtocolError
from portway.wire.messages import Message

log = logging.getLogger("portway.agent")

REACH_WAIT = 30.0  # how long a local client may wait for the hub before it is closed


class StreamServing:
    """Streams the hub opens and local clients waiting for one; see the module docs."""

    on_state: Reporter
    """Told each state change worth a line (the runtime's callback)."""

    def __init__(self, dialer: Dialer, e2e: EndToEnd, direct: DirectPaths) -> None:
        self.dialer = dialer
        self.e2e = e2e
        self.direct = direct
        self.tunnels = ServedTunnels()
        self._reached: dict[str, tuple[str, str]] = {}  # bind id -> (tunnel id, its name)
        self.paths = {"direct": 0, "relayed": 0}  # connections each path carried
        self._told_clear: set[str] = set()
        self._control: FramedConnection | None = None
        self._pending: dict[str, tuple[str, SocketStream | UdpSession]] = {}
        self._channel_tasks: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def _spawn(self, coro: Any, into: set[asyncio.Task[Any]] | None = None) -> None:
        bucket = self._tasks if into is None else into
        task = asyncio.create_task(coro)
        bucket.add(task)
        task.add_done_callback(bucket.discard)

    # -- streams the hub opens -------------------------------------------------------------------

    def _on_stream(self, stream: MuxStream, message: Message) -> None:
        """The hub opened a stream (on any link) that starts with `message`: serve it."""
        self._spawn(self._serve(stream, message), into=self._channel_tasks)

    async def _serve(self, stream: MuxStream, message: Message) -> None:
        """Serve the assignment a stream opens with (dial, diagnose, or join a waiting local
        client). A dial of a plain TCP target joins the target to the stream itself; the other
        kinds read on through a framed channel, closed unless a relay took the stream over."""
        if not isinstance(message, Assign):
            stream.reset(Reason.PROTOCOL_ERROR)
            return
        if message.mode is AssignMode.DIAL and joins_directly(message) and message.peer is None:
            await dial_stream(self.dialer, self.tunnels, stream, message)
            return
        channel = framed(stream)
        handed_over = False
        try:
            if message.mode is AssignMode.DIAL:
                handed_over = await self._dial(channel, message)
            elif message.mode is AssignMode.DIAGNOSE:
                await self._diagnose(channel, message)
            else:
                handed_over = await self._attach_reach(channel, message)
        except (ConnectionClosed, ProtocolError):
            return
        finally:
            if not handed_over:
                channel.close()

    async def _diagnose(self, channel: FramedConnection, assign: Assign) -> None:
        if await served(self.tunnels, channel, assign) is not None:
            channel.send(await diagnose(self.dialer, assign))

    async def _dial(self, channel: FramedConnection, assign: Assign) -> bool:
        spec = await served(self.tunnels, channel, assign)
        if spec is None:
            return False
        if assign.peer is not None and assign.protocol is not Protocol.UDP:
            return await self.e2e.dial(self.dialer, spec, channel, assign)
        return await dial(self.dialer, spec, channel, assign)

    async def _attach_reach(self, channel: FramedConnection, assign: Assign) -> bool:
        pending = self._pending.pop(assign.conn, None)
        if pending is None or not pending[1].open:
            channel.send(AssignError(assign.conn, Reason.GONE, "the local client left"))
            return False
        relay = pending[1]
        if assign.peer is not None and isinstance(relay, SocketStream):
            if self.e2e.identity is None:
                why = "this agent has no end-to-end certificate from the hub"
                channel.send(AssignError(assign.conn, Reason.DENIED, why))
                relay.reset(Reason.DENIED)
                return False
            self.direct.learn(assign)
            channel.send(AssignOk(assign.conn))
            if await self.e2e.reach(relay, channel, assign):
                self._carried(pending[0], "relayed")
            return True
        if self.e2e.identity is not None and assign.protocol is not Protocol.UDP:
            self._not_e2e(pending[0])
        channel.send(AssignOk(assign.conn))
        self._carried(pending[0], "relayed")
        transport, rest = channel.detach()
        if isinstance(relay, UdpSession):
            relay.attach(transport, rest)
        else:
            hand_over(relay, transport, rest)
        return True

    # -- local clients waiting for a stream ------------------------------------------------------

    def _listener(
        self, bind: str, tunnel: str, label: str, addresses: tuple[str, ...], port: int,
        protocol: str,
    ) -> ReachListener | UdpReachListener:  # fmt: skip
        self._reached[bind] = (tunnel, label)
        if protocol == Protocol.UDP:
            return UdpReachListener(bind, label, addresses, port, self._open_reach)
        return ReachListener(bind, label, addresses, port, self._open_reach)

    def _open_reach(self, bind: str, conn_id: str, client: SocketStream | UdpSession) -> None:
        """A local client connected to a reach listener: try the direct path first when there
        is one (protocol.md §20), else ask the hub for a stream at once."""
        self._pending[conn_id] = (bind, client)
        tunnel = self._reached.get(bind, ("", ""))[0]
        if isinstance(client, SocketStream) and self.direct.usable(tunnel):
            self._spawn(self._race(bind, tunnel, conn_id, client))
        else:
            self._ask_relay(bind, conn_id)
        self._spawn(self._expire_pending(conn_id))

    def _ask_relay(self, bind: str, conn_id: str) -> None:
        if self._control is not None:
            with contextlib.suppress(ConnectionClosed):
                self._control.send(ReachOpen(bind, conn_id))

    async def _race(self, bind: str, tunnel: str, conn_id: str, client: SocketStream) -> None:
        """The direct path gets `HEAD_START`; then the relay starts too, and whichever
        completes its handshake first takes the client (the other is reset)."""
        attempt = asyncio.ensure_future(self.direct.carry(tunnel, conn_id, client))
        try:
            done, _ = await asyncio.wait({attempt}, timeout=HEAD_START)
        except asyncio.CancelledError:  # the runtime stops
            attempt.cancel()
            raise
        if not done and client.open:
            self._ask_relay(bind, conn_id)
        if await attempt:
            self._pending.pop(conn_id, None)
            self._carried(bind, "direct")
        elif done and client.open:
            self._ask_relay(bind, conn_id)  # the direct path failed before its head start

    def _not_e2e(self, bind: str) -> None:
        """Say once per tunnel that the hub relays its traffic in the clear."""
        name = self._reached.get(bind, ("", bind))[1]
        if name not in self._told_clear:
            self._told_clear.add(name)
            why = "the tunnel opts out (--no-e2e), or its agent predates end-to-end reach"
            self.on_state("not_e2e", {"tunnel": name, "why": why})

    def _carried(self, bind: str, path: str) -> None:
        """Tell which path carries a new connection (`portway reach` prints it)."""
        self.paths[path] += 1
        name = self._reached.get(bind, ("", bind))[1]
        self.on_state("path", {"tunnel": name, "path": path})

    async def _expire_pending(self, conn_id: str) -> None:
        await asyncio.sleep(REACH_WAIT)
        pending = self._pending.pop(conn_id, None)
        if pending is not None:
            log.warning("no channel from the hub in time; closing the local client")
            pending[1].reset(Reason.UNAVAILABLE)

    def _resend_pending(self, conn: FramedConnection) -> None:
        """Ask again for the local clients still waiting (a new control stream)."""
        for conn_id, (bind, relay) in list(self._pending.items()):
            if relay.open:
                conn.send(ReachOpen(bind, conn_id))
