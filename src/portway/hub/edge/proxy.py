"""The edge listener and one client connection: h11 parses every request head, policy decides,
an `Exchange` relays it over a data channel of its own.

`Hub` creates `Edge`, calls `start()` after the data plane and `stop()` before it. Each accepted
connection is an `EdgeConnection`; requests on a kept-alive connection are handled one after the
other (pipelined ones wait, unread, in h11's buffer), and each one is routed and checked anew.
The only await is per request (policy lookup, channel assignment), never per chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from typing import cast

import h11

from portway.domain.clock import Clock
from portway.hub.access_log import AccessLog, Entry
from portway.hub.dataplane.pairing import Pairing, Unavailable
from portway.hub.dataplane.traffic import Traffic
from portway.hub.edge import headers as hdr
from portway.hub.edge.exchange import LIMIT, Exchange
from portway.hub.edge.pages import error_page
from portway.hub.edge.policy import Deny, Forward, Router, split_share
from portway.net.splice import hard_close
from portway.wire.codes import Reason

log = logging.getLogger("portway.hub.edge")

MAX_HEAD = 64 * 1024


class Edge:
    def __init__(
        self, router: Router, pairing: Pairing, traffic: Traffic, clock: Clock, access: AccessLog
    ) -> None:
        self.router = router
        self.pairing = pairing
        self.traffic = traffic
        self.clock = clock
        self.access = access
        self.connections: set[EdgeConnection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: EdgeConnection(self), sock=sock)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                conn.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None


class EdgeConnection(asyncio.Protocol):
    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.h = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.exchange: Exchange | None = None
        self.waiting = False  # a request head is being decided / its channel opened
        self.discarding = False  # the request body of an answered request is being skipped
        self.raw: Exchange | None = None
        self.paused_by: set[str] = set()
        self.closed = False
        self._accept = ""  # the current request's Accept header (HTML or JSON error pages)
        self._task: asyncio.Task[None] | None = None

    # -- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=LIMIT)
        peer = transport.get_extra_info("peername")
        self.client_ip = str(peer[0]) if peer else ""
        self.edge.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.raw is not None:
            self.raw.send_body(data)
            return
        self.h.receive_data(data)
        self._pump()

    def eof_received(self) -> bool:
        if self.raw is not None:
            self.raw.client_eof()
            return True
        self.h.receive_data(b"")
        self._pump()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.edge.connections.discard(self)
        if self._task is not None:
            self._task.cancel()
        if self.exchange is not None:
            self.exchange.reset(Reason.GONE)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.pause_reading()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.resume_reading()

    # -- helpers used by Exchange -----------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send(self, event: h11.Event) -> None:
        data = self.h.send(event)
        if data:
            self.write(data)

    def pause_reading(self, why: str = "upstream") -> None:
        self.paused_by.add(why)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self, why: str = "upstream") -> None:
        self.paused_by.discard(why)
        if not self.paused_by and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
            if self.raw is None:
                self._pump()

    def abort(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            hard_close(self.transport)

    def raw_eof(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if self.transport.can_write_eof():
                self.transport.write_eof()
            else:
                self.transport.close()

    def switch_to_raw(self, exchange: Exchange) -> None:
        self.raw = exchange
        pending, _ = self.h.trailing_data
        if pending:
            exchange.send_body(bytes(pending))
        self.resume_reading("decide")

    def exchange_done(self, exchange: Exchange) -> None:
        """The response went out whole; go on with the next request once the body is read."""
        if self.h.their_state is h11.SEND_BODY:
            self.discarding = True
        self._next_cycle()

    def exchange_closed(self, exchange: Exchange) -> None:
        if self.exchange is exchange:
            self._log(exchange.decision, exchange.request, exchange.status or 502, exchange)
            self.edge.traffic.closed(exchange.decision.route.id, exchange)
            self.exchange = None
        if self.raw is exchange:
            if exchange.decoder.eof and self.transport is not None:
                self.transport.close()  # flushes what is left, then FIN
            else:
                self.abort()
        elif "upstream" in self.paused_by:
            self.resume_reading("upstream")  # the channel is gone; it cannot drain any more

    def exchange_failed(self, exchange: Exchange) -> None:
        answered = self.h.our_state is not h11.SEND_RESPONSE
        self.exchange_closed(exchange)
        if answered or self.raw is not None:
            self.abort()
            return
        self._answer_error(502, "bad_gateway", "the target closed the connection", [])

    # -- request handling -------------------------------------------------------------------------

    def _pump(self) -> None:
        while not self.closed and not self.waiting and not self.paused_by - {"decide"}:
            try:
                event = self.h.next_event()
            except h11.RemoteProtocolError:
                self._bad_request()
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self.waiting = True
                self.pause_reading("decide")
                self._task = asyncio.get_running_loop().create_task(self._begin(event))
                return
            if isinstance(event, h11.Data):
                if self.exchange is not None and not self.discarding:
                    self.exchange.send_body(event.data)
            elif isinstance(event, h11.EndOfMessage):
                if self.exchange is not None and not self.discarding:
                    self.exchange.end_body()
                self.discarding = False
                self._next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                if self.transport is not None and self.exchange is None:
                    self.transport.close()
                return

    def _next_cycle(self) -> None:
        if self.h.our_state is h11.MUST_CLOSE or self.h.their_state is h11.MUST_CLOSE:
            if self.transport is not None:
                self.transport.close()
            return
        if self.h.our_state is h11.DONE and self.h.their_state is h11.DONE:
            self.h.start_next_cycle()
            self.resume_reading("decide")

    def _bad_request(self) -> None:
        if self.h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            page, body = error_page(400, "bad_request", "malformed HTTP request", "")
            with contextlib.suppress(h11.LocalProtocolError):
                self.write(
                    self.h.send(
                        h11.Response(status_code=400, headers=[*page, ("Connection", "close")])
                    )
                    or b""
                )
                self.write(self.h.send(h11.Data(data=body)) or b"")
                self.write(self.h.send(h11.EndOfMessage()) or b"")
        if self.transport is not None:
            self.transport.close()

    async def _begin(self, request: h11.Request) -> None:
        heads = {n.lower(): v.decode("latin-1") for n, v in request.headers}
        self._accept = heads.get(b"accept", "")
        host = heads.get(b"host", "")
        target = request.target.decode("latin-1")
        method = request.method.decode("latin-1")
        try:
            decision = await self.edge.router.decide(method, target, host)
        except Exception:
            log.exception("edge policy failed")
            decision = Deny(503, "unavailable", "the hub cannot check this request right now")
        denial = decision if isinstance(decision, Deny) else None
        if isinstance(decision, Forward) and not self.closed:
            denial = await self._forward(decision, request, host)
        self.waiting = False
        if denial is not None and not self.closed:
            self._log(denial, request, denial.status, None)
            self._answer_error(denial.status, denial.code, denial.message, denial.headers)
        self._task = None
        if denial is not None and not self.closed:
            # The rest of the request (at least h11's EndOfMessage) is read and skipped; the
            # pump then starts the next cycle.
            self.resume_reading("decide")

    async def _forward(self, decision: Forward, request: h11.Request, host: str) -> Deny | None:
        edge = self.edge
        try:
            transport, rest, route = await edge.pairing.open_channel(
                decision.route.id, uuid.uuid4().hex, tls=True
            )
        except Unavailable as exc:
            status = 503 if exc.reason is Reason.PAUSED else 502
            code = "tunnel_paused" if status == 503 else "agent_unavailable"
            return Deny(status, code, exc.message, decision.headers, decision.share)
        if self.closed:
            transport.abort()
            return None
        exchange = Exchange(self, decision, request)
        self.exchange = exchange
        head = h11.Request(
            method=request.method,
            target=decision.target.encode("latin-1"),
            headers=hdr.upstream_request_headers(
                request.headers, client_ip=self.client_ip, host=host
            ),
        )
        edge.traffic.opened(route.id, exchange, edge.clock.now())
        exchange.attach(transport, rest, head)
        if self.raw is None and not exchange.finished:
            self.resume_reading("decide")
        return None

    def _answer_error(
        self, status: int, code: str, message: str, extra: list[tuple[str, str]]
    ) -> None:
        page, body = error_page(status, code, message, self._accept)
        if self.h.their_state is h11.SEND_BODY:
            self.discarding = True
        try:
            self.send(h11.Response(status_code=status, headers=[*page, *extra]))
            self.send(h11.Data(data=body))
            self.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            self.abort()

    def _log(self, decision: Forward | Deny, request: h11.Request, status: int,
             exchange: Exchange | None) -> None:  # fmt: skip
        share = decision.share
        if share is None:
            return
        agent = next((v for n, v in request.headers if n.lower() == b"user-agent"), None)
        self.edge.access.add(Entry(
            share_id=share.id, workspace_id=share.workspace_id, at=self.edge.clock.now(),
            remote_addr=self.client_ip, method=request.method.decode("latin-1"),
            path=_without_token(request.target.decode("latin-1")), status=status,
            allowed=isinstance(decision, Forward),
            reason=None if isinstance(decision, Forward) else decision.code,
            user_agent=None if agent is None else agent.decode("latin-1"),
            bytes_in=None if exchange is None else exchange.bytes_a_to_b,
            bytes_out=None if exchange is None else exchange.bytes_b_to_a,
            latency_ms=None if exchange is None else _elapsed_ms(exchange.started),
        ))  # fmt: skip


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _without_token(target: str) -> str:
    """The path a share request asked for, never the token itself (logs must not hold it)."""
    shared = split_share(target)
    return target if shared is None else shared[1] or "/"
