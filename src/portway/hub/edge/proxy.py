"""One client connection of the edge: http1.py parses every request head, policy decides, an
`Exchange` relays it over the connection's upstream `Lane` (upstream.py): the channel the
previous request left idle when it routes to the same tunnel, else a new one from `Pairing`.

`Edge` (listener.py) makes an `EdgeConnection` of each accepted connection. Requests on a
kept-alive connection are handled one after the other (pipelined ones wait, parsed, in http1's
queue), and each one is routed and checked anew. A request for the tunnel the connection's idle
lane leads to, whose answer the router has without the store, is forwarded at once; otherwise a
task waits for the policy lookup and the channel. Nothing awaits per chunk. A GET or HEAD that
fails on a reused channel before anything came back is sent once more on a fresh one
(`Exchange.retryable`); any other failure is the client's 502, as with nginx. A `Watchdog`
(timeouts.py) bounds the time a client may take to send a request head, to send the next piece
of a request body, and to sit idle between requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, cast

from portway.hub.edge import headers as hdr
from portway.hub.edge import http1
from portway.hub.edge.entries import share_entry
from portway.hub.edge.exchange import LIMIT, Exchange
from portway.hub.edge.pages import error_response
from portway.hub.edge.policy import Deny, Forward
from portway.hub.edge.timeouts import Phase, Watchdog
from portway.hub.edge.upstream import Lane, lane_for
from portway.net.splice import hard_close

if TYPE_CHECKING:
    from portway.hub.edge.listener import Edge

log = logging.getLogger("portway.hub.edge")

MAX_HEAD = 64 * 1024  # a longer request head (request line and headers) is answered 431
DECIDING = frozenset({"decide"})  # the only pause under which the pump still reads h11's queue
UNAVAILABLE = Deny(503, "unavailable", "the hub cannot check this request right now")


class EdgeConnection(asyncio.Protocol):
    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.h = http1.ServerConnection(MAX_HEAD)
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.exchange: Exchange | None = None
        self.lane: Lane | None = None  # the upstream channel, kept across requests
        self.waiting = False  # a request head is being decided / its channel opened
        self.discarding = False  # the request body of an answered request is being skipped
        self.raw: Exchange | None = None
        self.paused_by: set[str] = set()
        self.closed = False
        self._accept = ""  # the current request's Accept header (HTML or JSON error pages)
        self._task: asyncio.Task[None] | None = None
        self.watchdog = Watchdog(edge.timeouts, self._timed_out, lambda: bool(self.paused_by)
                                 or self.h.they_are_waiting_for_100_continue)  # fmt: skip

    # -- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=LIMIT)
        peer = transport.get_extra_info("peername")
        self.client_ip = str(peer[0]) if peer else ""
        self.edge.connections.add(self)
        self.watchdog.start(Phase.HEAD)

    def data_received(self, data: bytes) -> None:
        if self.raw is not None:
            self.raw.send_body(data)
            return
        self.watchdog.received()
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
        self.watchdog.close()
        if self._task is not None:
            self._task.cancel()
        if self.exchange is not None:
            self.exchange.client_gone()
        if self.lane is not None:
            self.lane.close()

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

    def write_all(self, parts: list[bytes]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(parts)

    def frame(self, event: http1.Event) -> bytes:
        return self.h.send(event) or b""

    def send(self, event: http1.Event) -> None:
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
        self.watchdog.stop()  # a WebSocket may stay quiet for as long as it likes
        pending, _ = self.h.trailing_data
        if pending:
            exchange.send_body(bytes(pending))
        self.resume_reading("decide")

    def exchange_done(self, exchange: Exchange) -> None:
        """The response went out whole; go on with the next request once the body is read."""
        if self.h.their_state is http1.SEND_BODY:
            self.discarding = True
        self._next_cycle()

    def exchange_closed(
        self, exchange: Exchange, status: int | None = None, reason: str | None = None
    ) -> None:
        if self.exchange is exchange:
            status = status or exchange.status or 502
            self._log(exchange.decision, exchange.request, status, exchange, reason)
            if exchange.decision.share is not None:
                self.edge.live.discard(exchange.decision.share.id, exchange)
            self.exchange = None
        if self.raw is exchange:
            if exchange.eof_in and self.transport is not None:
                self.transport.close()  # flushes what is left, then FIN
            else:
                self.abort()
        elif "upstream" in self.paused_by:
            self.resume_reading("upstream")  # the channel is gone; it cannot drain any more

    def exchange_failed(self, exchange: Exchange) -> None:
        answered = self.h.our_state is not http1.SEND_RESPONSE
        if exchange.retryable() and not answered and self.exchange is exchange and not self.closed:
            self._retry(exchange)
            return
        self.exchange_closed(exchange)
        if answered or self.raw is not None:
            self.abort()
            return
        self._answer_error(502, "bad_gateway", "the target closed the connection", [])
        self._next_cycle()  # the request may have been read whole already

    def exchange_cut(self, exchange: Exchange, why: Deny) -> None:
        """`Exchange.cut()` ended the channel: answer `why` and close if nothing of a response
        went out yet, else reset the connection so the client sees a truncated response."""
        answered = self.raw is not None or self.h.our_state is not http1.SEND_RESPONSE
        status = None if answered else why.status  # the log records the status as sent
        self.exchange_closed(exchange, status, f"cut_{why.code}")
        if answered:
            self.abort()
        else:
            self._close_with(why.status, why.code, why.message, why.headers)

    # -- timeouts (called by the Watchdog) ------------------------------------------------------

    def _timed_out(self, phase: Phase, partial: bool) -> None:
        """A phase outlived its timeout: 408 for a request head or body that stopped coming
        (cutting the exchange under way), silence for an idle or never-used connection."""
        if self.closed or self.transport is None:
            return
        if phase is Phase.BODY:
            why = Deny(408, "request_timeout", "the request body stopped arriving")
            if self.exchange is not None:
                self.exchange.cut(why)
                return
            if self.h.our_state in (http1.IDLE, http1.SEND_RESPONSE):
                self._close_with(why.status, why.code, why.message, [])
            else:
                self.transport.close()  # the answer went out; the rest of the body never came
        elif phase is Phase.HEAD and partial:
            self._close_with(408, "request_timeout", "the request head took too long", [])
        else:
            self.transport.close()  # idle, or a connection that never sent a byte: no answer

    # -- request handling -------------------------------------------------------------------------

    def _pump(self) -> None:
        while not self.closed and not self.waiting and self.paused_by <= DECIDING:
            try:
                event = self.h.next_event()
            except http1.RemoteProtocolError as exc:
                self._bad_request(exc)
                return
            if event is http1.NEED_DATA or event is http1.PAUSED:
                return
            if isinstance(event, http1.Request):
                self.watchdog.start(Phase.BODY)  # excused while deciding (reading is paused)
                host, self._accept = hdr.host_and_accept(event.headers)
                decision = self._decide_now(event, host)
                lane = self.lane
                if (
                    isinstance(decision, Forward) and lane is not None
                    and lane.usable_for(decision.route.id, tls=True)
                ):  # fmt: skip
                    self._start(decision, event, host, lane)  # the common case: no task
                    continue
                self.waiting = True
                self.pause_reading("decide")
                self._task = asyncio.get_running_loop().create_task(
                    self._begin(event, host, decision)
                )
                return
            if isinstance(event, http1.Data):
                if self.exchange is not None and not self.discarding:
                    self.exchange.send_body(event.data)
            elif isinstance(event, http1.EndOfMessage):
                self.watchdog.stop()
                if self.exchange is not None and not self.discarding:
                    self.exchange.end_body()
                self.discarding = False
                self._next_cycle()
            elif isinstance(event, http1.ConnectionClosed):
                if self.transport is not None and self.exchange is None:
                    self.transport.close()
                return

    def _next_cycle(self) -> None:
        # Close only once our response is complete: a request that says `Connection: close`
        # is done (theirs MUST_CLOSE) long before its answer is.
        if self.h.our_state is http1.MUST_CLOSE:
            if self.transport is not None:
                self.transport.close()
            return
        if self.h.our_state is http1.DONE and self.h.their_state is http1.DONE:
            self.h.start_next_cycle()
            pipelined = self.h.pending  # the next head, or part of it, is here
            self.watchdog.start(Phase.HEAD if pipelined else Phase.IDLE, partial=pipelined)
            self.resume_reading("decide")

    def _bad_request(self, exc: http1.RemoteProtocolError) -> None:
        if exc.status_hint == 431:
            self._close_with(431, "head_too_large", "the request head is too large", [])
        else:
            self._close_with(400, "bad_request", "malformed HTTP request", [])

    def _close_with(
        self, status: int, code: str, message: str, extra: list[tuple[str, str]]
    ) -> None:
        """Answer with an error page if no response was started, then close the connection."""
        self.watchdog.stop()
        if self.h.our_state in (http1.IDLE, http1.SEND_RESPONSE):
            with contextlib.suppress(http1.LocalProtocolError):
                closing = [*extra, ("Connection", "close")]
                self.write(error_response(self.h, status, code, message, self._accept, closing))
        if self.transport is not None:
            self.transport.close()

    def _decide_now(self, request: http1.Request, host: str) -> Forward | Deny | None:
        """The router's answer if it needs no store read, else None (`_begin` waits for it)."""
        method, target = request.method.decode("latin-1"), request.target.decode("latin-1")
        try:
            return self.edge.router.decide_now(method, target, host)
        except Exception:
            log.exception("edge policy failed")
            return UNAVAILABLE

    async def _begin(
        self, request: http1.Request, host: str, decision: Forward | Deny | None
    ) -> None:
        if decision is None:
            method, target = request.method.decode("latin-1"), request.target.decode("latin-1")
            try:
                decision = await self.edge.router.decide(method, target, host)
            except Exception:
                log.exception("edge policy failed")
                decision = UNAVAILABLE
        await self._proceed(decision, request, host)

    async def _proceed(self, decision: Forward | Deny, request: http1.Request, host: str,
                       failed: Exchange | None = None) -> None:  # fmt: skip
        """Forward the request or answer its denial, then read on; `failed`: see `_retry`."""
        denial = decision if isinstance(decision, Deny) else None
        if isinstance(decision, Forward) and not self.closed:
            denial = await self._forward(decision, request, host)
        self.waiting = False
        if denial is not None and not self.closed:
            self._log(denial, request, denial.status, None)
            self._answer_error(denial.status, denial.code, denial.message, denial.headers)
        self._task = None
        if self.closed:
            return
        if failed is not None and failed.request_done:  # its EndOfMessage went to `failed`
            if self.exchange is not None:
                self.exchange.end_body()
            else:
                self._next_cycle()
        if denial is not None:
            # The rest of the request (at least h11's EndOfMessage) is read and skipped; the
            # pump then starts the next cycle.
            self.resume_reading("decide")
        elif self.raw is None:
            # What h11 holds already (at least a bodyless request's EndOfMessage) goes upstream
            # now, so the body timeout stops as soon as the request is complete.
            self._pump()

    async def _forward(self, decision: Forward, request: http1.Request, host: str) -> Deny | None:
        lane = await lane_for(self.lane, self.edge, decision, self._lane_closed)
        if isinstance(lane, Deny):
            return lane
        if self.closed:
            lane.close(abort=True)
            return None
        exchange = self._start(decision, request, host, lane)
        if self.raw is None and not exchange.finished:
            self.resume_reading("decide")
        return None

    def _start(self, decision: Forward, request: http1.Request, host: str, lane: Lane) -> Exchange:
        """Send the request head upstream on `lane`; its body and the response follow."""
        self.lane = lane
        exchange = Exchange(self, decision, request, lane)
        self.exchange = exchange
        if decision.share is not None:
            self.edge.live.add(decision.share.id, exchange)
        head = http1.Request(
            request.method,
            decision.target.encode("latin-1"),
            hdr.upstream_request_headers(request.headers, client_ip=self.client_ip, host=host),
        )
        exchange.attach(head)
        return exchange

    def _retry(self, failed: Exchange) -> None:
        """Send `failed` (see `Exchange.retryable`) again on a fresh channel, unlogged."""
        self.exchange = None
        if failed.decision.share is not None:
            self.edge.live.discard(failed.decision.share.id, failed)
        self.waiting = True
        self.pause_reading("decide")
        host = next((v for n, v in failed.request.headers if n.lower() == b"host"), b"")
        self._task = asyncio.get_running_loop().create_task(
            self._proceed(failed.decision, failed.request, host.decode("latin-1"), failed)
        )

    def _lane_closed(self, lane: Lane) -> None:
        if self.lane is lane:
            self.lane = None

    def _answer_error(
        self, status: int, code: str, message: str, extra: list[tuple[str, str]]
    ) -> None:
        if self.h.their_state is http1.SEND_BODY:
            self.discarding = True
        try:
            self.write(error_response(self.h, status, code, message, self._accept, extra))
        except http1.LocalProtocolError:
            self.abort()

    def _log(self, decision: Forward | Deny, request: http1.Request, status: int,
             exchange: Exchange | None, reason: str | None = None) -> None:  # fmt: skip
        entry = share_entry(decision, request, status, exchange, client_ip=self.client_ip,
                            at=self.edge.clock.now(), reason=reason)  # fmt: skip
        if entry is not None:
            self.edge.access.add(entry)
