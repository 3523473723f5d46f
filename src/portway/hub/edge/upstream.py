"""The upstream lane of one client connection: a stream to the target kept across requests.

`EdgeConnection._forward` (proxy.py) reuses its `Lane` for the next request that routes to the
same tunnel (and TLS mode) instead of asking `Pairing.open_channel` for a new stream, the way
nginx `keepalive` upstreams do: the stream (a transport of plain bytes, FIN and RST) and the
http1 `ClientConnection` live here, and each request's `Exchange` (exchange.py) borrows them with
`take()` and gives them back with `release()`. A lane is kept only when both the request and
the response ended cleanly (`DONE` both ways, no `Connection: close` from the target, no
`101`, no cut or failure, nothing left over); otherwise it ends with its exchange.

An idle lane is the channel's protocol: any byte, EOF or reset from the target while no request
is under way (the target closed its idle keep-alive connection) drops it, so the next request
takes a fresh channel. It is registered with `Traffic` for its whole life (so a paused, deleted
or changed tunnel closes it through `reset()`, and the tunnel's connection counters count
channels to the target), and with `LiveShares` while idle after a share request (so a revoked
share's idle channel is closed by the sweep through `cut()`). The client connection closes it
when it closes itself (idle timeout included).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from portway.hub.dataplane.pairing import Unavailable
from portway.hub.dataplane.traffic import Traffic
from portway.hub.edge import http1
from portway.hub.edge.cut import LiveShares
from portway.hub.edge.policy import Deny, Forward
from portway.wire.codes import Reason

if TYPE_CHECKING:
    from portway.hub.edge.exchange import Exchange
    from portway.hub.edge.listener import Edge


async def lane_for(
    current: Lane | None, edge: Edge, decision: Forward, on_closed: Callable[[Lane], None]
) -> Lane | Deny:
    """The lane for a request `decision` forwards: `current` if it is idle and leads to the
    same tunnel (and TLS mode), else a new channel the tunnel's agent dialled to the target
    (speaking TLS itself to an https target), `current` being closed; or the answer when no
    channel can be had."""
    tunnel_id, tls = decision.route.id, True
    if current is not None:
        if current.usable_for(tunnel_id, tls):
            return current
        current.close()  # another tunnel (Host switched), or it died
    try:
        transport, rest, route = await edge.pairing.open_channel(
            tunnel_id, uuid.uuid4().hex, tls=tls
        )
    except Unavailable as exc:
        status = 503 if exc.reason is Reason.PAUSED else 502
        code = "tunnel_paused" if status == 503 else "agent_unavailable"
        return Deny(status, code, exc.message, decision.headers, decision.share)
    return Lane(
        route.id, tls, transport, rest, traffic=edge.traffic, live=edge.live,
        now=edge.clock.now(), on_closed=on_closed,
    )  # fmt: skip


class Lane(asyncio.Protocol):
    def __init__(
        self, tunnel_id: uuid.UUID, tls: bool, transport: asyncio.Transport, rest: bytes, *,
        traffic: Traffic, live: LiveShares, now: datetime, on_closed: Callable[[Lane], None],
    ) -> None:  # fmt: skip
        self.traffic = traffic
        self.live = live
        self.on_closed = on_closed
        self.tunnel_id = tunnel_id
        self.tls = tls
        self.transport = transport
        self.rest = rest
        self.h = http1.ClientConnection()
        self.eof_in = False  # the target finished sending (the stream's FIN)
        self.exchange: Exchange | None = None
        self.idle_share: uuid.UUID | None = None  # registered with LiveShares while idle
        self.uses = 0
        self.closed = False
        self._done_in = 0  # bytes of the exchanges that ended, for `Traffic`
        self._done_out = 0
        traffic.opened(tunnel_id, self, now)

    # -- as `Traffic` sees it ---------------------------------------------------------------------

    @property
    def bytes_a_to_b(self) -> int:
        current = 0 if self.exchange is None else self.exchange.bytes_a_to_b
        return self._done_in + current

    @property
    def bytes_b_to_a(self) -> int:
        current = 0 if self.exchange is None else self.exchange.bytes_b_to_a
        return self._done_out + current

    def reset(self, reason: Reason = Reason.CLOSED) -> None:
        """The tunnel was paused, deleted or changed: cut the exchange under way, or close."""
        if self.exchange is not None:
            self.exchange.reset(reason)
        else:
            self.close(abort=True)

    def cut(self, why: Deny) -> None:
        """`LiveShares` found the share of the last request unusable; only while idle."""
        if self.exchange is None:
            self.close(abort=True)

    # -- lending to exchanges ---------------------------------------------------------------------

    def usable_for(self, tunnel_id: uuid.UUID, tls: bool) -> bool:
        return (
            not self.closed and self.exchange is None and not self.transport.is_closing()
            and self.tunnel_id == tunnel_id and self.tls == tls
        )  # fmt: skip

    def take(self, exchange: Exchange) -> bytes:
        """Lend the channel to `exchange` (its protocol from now on); the bytes already read."""
        if self.idle_share is not None:
            self.live.discard(self.idle_share, self)
            self.idle_share = None
        self.exchange = exchange
        self.uses += 1
        self.transport.set_protocol(exchange)
        rest, self.rest = self.rest, b""
        return rest

    def release(self, exchange: Exchange, *, reusable: bool) -> bool:
        """`exchange` ended: keep the channel idle for the next request when it ended cleanly
        and both sides can go on (True), else end it (EOF then close if `reusable`, else
        abort)."""
        if self.exchange is not exchange:
            return False
        self._done_in += exchange.bytes_a_to_b
        self._done_out += exchange.bytes_b_to_a
        self.exchange = None
        if reusable and self._can_go_on():
            self.h.start_next_cycle()
            self.transport.set_protocol(self)
            self.transport.resume_reading()  # an EOF from the target must be seen while idle
            share = exchange.decision.share
            if share is not None:
                self.idle_share = share.id
                self.live.add(share.id, self)
            return True
        self.close(abort=not reusable)
        return False

    def _can_go_on(self) -> bool:
        return (
            not self.closed and not self.transport.is_closing()
            and self.h.our_state is http1.DONE and self.h.their_state is http1.DONE
            and not self.eof_in
            and not self.h.pending and not self.h.trailing_data[1]
        )  # fmt: skip

    def close(self, *, abort: bool = False) -> None:
        """End the channel: EOF then close (the agent closes its target connection), or abort."""
        if self.closed:
            return
        self.closed = True
        if self.idle_share is not None:
            self.live.discard(self.idle_share, self)
            self.idle_share = None
        if abort:
            self.transport.abort()
        elif not self.transport.is_closing():
            self.transport.close()  # FIN; the agent ends its target connection
        self.traffic.closed(self.tunnel_id, self)
        self.on_closed(self)

    # -- asyncio callbacks while idle (an exchange is the protocol while it runs) -----------------

    def data_received(self, data: bytes) -> None:
        """Nothing is due from the target while idle: bytes abort the lane."""
        self.close(abort=True)

    def eof_received(self) -> bool:
        """The target closed its idle keep-alive connection: the lane ends cleanly."""
        self.eof_in = True
        self.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(abort=True)
