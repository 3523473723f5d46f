"""The asyncio side of one client connection of the edge: sockets and tasks around a
`Conversation` (conversation.py), which decides everything.

`Edge` (listener.py) makes an `EdgeConnection` of each accepted connection. Every callback of
the client transport and of the upstream `Channel` (the stream `TargetChannels.open_channel`
gave) is handed to the conversation, then its actions are carried out in order (`_run`); an
action whose effect calls back in (a write that pauses the writer) only appends to the same
list. The only tasks are a store lookup for a request the router could not decide from memory
and the opening of a channel, one at a time; nothing awaits per chunk. A `Watchdog`
(timeouts.py) times the client phases the conversation names.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, cast

from portway.hub.dataplane.channels import TunnelUnavailable
from portway.hub.edge.actions import Asking, Logged, Op
from portway.hub.edge.conversation import Conversation
from portway.hub.edge.entries import share_entry
from portway.hub.edge.exchange import Lane
from portway.hub.edge.request_side import UNAVAILABLE
from portway.hub.edge.router import Deny, Forward
from portway.hub.edge.timeouts import Phase, Watchdog
from portway.net.splice import hard_close
from portway.wire.codes import Reason

if TYPE_CHECKING:
    from portway.hub.edge.listener import Edge

log = logging.getLogger("portway.hub.edge")

LIMIT = 256 * 1024  # write buffer high-water mark, both ways


class EdgeConnection(asyncio.Protocol):
    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.transport: asyncio.Transport | None = None
        self.conv = Conversation(edge.router.decide_now, client_ip="")
        self.channel: Channel | None = None
        self.watchdog: Watchdog | None = None
        self._task: asyncio.Task[None] | None = None
        self._live: uuid.UUID | None = None
        self._running = False

    # -- the client transport's callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=LIMIT)
        peer = transport.get_extra_info("peername")
        self.conv.client_ip = str(peer[0]) if peer else ""
        self.edge.connections.add(self)
        self.watchdog = Watchdog(self.edge.timeouts, self._timed_out, self.conv.excused)
        self.watchdog.start(Phase.HEAD)

    def data_received(self, data: bytes) -> None:
        if not self.conv.raw and self.watchdog is not None:
            self.watchdog.received()
        self.conv.receive(data)
        self._run()

    def eof_received(self) -> bool:
        keep = self.conv.receive_eof()
        self._run()
        return keep

    def connection_lost(self, exc: Exception | None) -> None:
        self.edge.connections.discard(self)
        if self.watchdog is not None:
            self.watchdog.close()
        if self._task is not None:
            self._task.cancel()
        self.conv.lost()
        self._run()

    def pause_writing(self) -> None:
        self.conv.client_paused(True)
        self._run()

    def resume_writing(self) -> None:
        self.conv.client_paused(False)
        self._run()

    # -- from outside -----------------------------------------------------------------------------

    def cut(self, why: Deny) -> None:
        """`LiveShares.sweep` (cut.py): the share this connection serves stopped being usable."""
        self.conv.cut(why)
        self._run()

    def abort(self) -> None:
        """`Edge.stop`: reset the client connection."""
        if self.transport is not None and not self.transport.is_closing():
            hard_close(self.transport)

    def _timed_out(self, phase: Phase, partial: bool) -> None:
        self.conv.timed_out(phase, partial)
        self._run()

    # -- carrying out the conversation's actions --------------------------------------------------

    def _run(self) -> None:
        if self._running:
            return  # an action called back in; the loop below takes what it appended
        self._running = True
        actions = self.conv.actions
        try:
            i = 0
            while i < len(actions):
                op, arg = actions[i]
                i += 1
                self._do(op, arg)
        finally:
            actions.clear()
            self._running = False

    def _do(self, op: Op, arg: Any) -> None:  # noqa: PLR0912 (one branch per action)
        t, channel = self.transport, self.channel
        if op is Op.WRITE:
            if t is not None and not t.is_closing():
                t.writelines(arg)
        elif op is Op.UP_WRITE:
            if channel is not None:
                channel.write(arg)
        elif op is Op.TIMER:
            if self.watchdog is not None:
                self.watchdog.stop() if arg is None else self.watchdog.start(arg[0], partial=arg[1])
        elif op is Op.PAUSE:
            if t is not None and not t.is_closing():
                t.pause_reading() if arg else t.resume_reading()
        elif op is Op.UP_PAUSE:
            if channel is not None:
                channel.pause(arg)
        elif op is Op.UP_CLOSE:
            if channel is not None:
                self.channel = None
                channel.close(abort=arg)
        elif op is Op.LIVE:
            if self._live is not None:
                self.edge.live.discard(self._live, self)
            self._live = arg
            if arg is not None:
                self.edge.live.add(arg, self)
        elif op is Op.LOG:
            self._log(arg)
        elif op is Op.DECIDE:
            self._spawn(self._decide(arg))
        elif op is Op.OPEN:
            self._spawn(self._open(arg))
        elif op is Op.UP_EOF:
            if channel is not None:
                channel.write_eof()
        elif t is None or t.is_closing():
            return
        elif op is Op.CLOSE:
            t.close()  # flushes what is left, then FIN
        elif op is Op.ABORT:
            hard_close(t)
        elif op is Op.EOF:
            t.write_eof() if t.can_write_eof() else t.close()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.get_running_loop().create_task(work)

    async def _decide(self, asking: Asking) -> None:
        try:
            decision = await self.edge.router.decide(asking.method, asking.target, asking.host)
        except Exception:
            log.exception("edge policy failed")
            decision = UNAVAILABLE
        self._task = None
        self.conv.decided(decision)
        self._run()

    async def _open(self, decision: Forward) -> None:
        """A channel the tunnel's agent dialled to the target (speaking TLS itself to an https
        target), or the answer when none can be had."""
        edge = self.edge
        try:
            transport, rest, route = await edge.channels.open_channel(
                decision.route.id, uuid.uuid4().hex, tls=True
            )
        except TunnelUnavailable as exc:
            self._task = None
            status = 503 if exc.reason is Reason.PAUSED else 502
            code = "tunnel_paused" if status == 503 else "agent_unavailable"
            self.conv.open_failed(Deny(status, code, exc.message, decision.headers, decision.share))
            self._run()
            return
        self._task = None
        if self.conv.closed:
            transport.abort()  # the client left while the agent dialled
            return
        lane = Lane(route.id)
        self.channel = Channel(self, lane, transport)
        self.conv.opened(lane, rest)
        self._run()

    def _log(self, logged: Logged) -> None:
        entry = share_entry(
            logged.decision, logged.request, logged.status, logged.exchange,
            client_ip=self.conv.client_ip, at=self.edge.clock.now(), reason=logged.reason,
        )  # fmt: skip
        if entry is not None:
            self.edge.access.add(entry)


class Channel(asyncio.Protocol):
    """The upstream stream of a lane: its callbacks go to the conversation while it is the
    connection's channel, and `Traffic` counts it (its bytes are the lane's) until it closes."""

    def __init__(self, conn: EdgeConnection, lane: Lane, transport: asyncio.Transport) -> None:
        self.conn = conn
        self.lane = lane
        self.transport = transport
        transport.set_protocol(self)
        transport.set_write_buffer_limits(high=LIMIT)
        conn.edge.traffic.opened(lane.tunnel_id, self, conn.edge.clock.now())

    @property
    def bytes_a_to_b(self) -> int:
        return self.lane.bytes_a_to_b

    @property
    def bytes_b_to_a(self) -> int:
        return self.lane.bytes_b_to_a

    def reset(self, reason: Reason = Reason.CLOSED) -> None:
        """`Traffic.reset`: the tunnel was paused, deleted or changed."""
        if self.conn.channel is self:
            self.conn.conv.reset(reason)
            self.conn._run()

    # -- used by EdgeConnection -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    def write_eof(self) -> None:
        if not self.transport.is_closing():
            self.transport.write_eof()

    def pause(self, paused: bool) -> None:
        if not self.transport.is_closing():
            self.transport.pause_reading() if paused else self.transport.resume_reading()

    def close(self, *, abort: bool) -> None:
        """End the stream: FIN (the agent ends its target connection), or abort."""
        if abort:
            self.transport.abort()
        elif not self.transport.is_closing():
            self.transport.close()
        self.conn.edge.traffic.closed(self.lane.tunnel_id, self)

    # -- the stream's callbacks -------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.conn.channel is self:
            self.conn.conv.upstream_data(data)
            self.conn._run()

    def eof_received(self) -> bool:
        if self.conn.channel is not self:
            return False
        keep = self.conn.conv.upstream_eof()
        self.conn._run()
        return keep

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn.channel is self:
            self.conn.conv.upstream_lost()
            self.conn._run()

    def pause_writing(self) -> None:
        if self.conn.channel is self:
            self.conn.conv.upstream_paused(True)
            self.conn._run()

    def resume_writing(self) -> None:
        if self.conn.channel is self:
            self.conn.conv.upstream_paused(False)
            self.conn._run()
