"""One client connection of the edge as a state machine: bytes and events in, actions out.

`EdgeConnection` (connection.py) feeds it what its sockets and tasks report: the client's bytes
(`receive`), the upstream channel's (`upstream_data`), EOFs, losses, writability, the router's
answer (`decided`), a new channel (`opened`) or why none (`open_failed`), a cut from outside
(`cut`, `reset`), an expired client timeout (`timed_out`). After each input it carries out the
`actions` (exchange.py `Op`) in order. Nothing here awaits, touches a socket or reads a clock
other than `time.monotonic()` for the access log.

Requests on a kept-alive connection are handled one after the other (pipelined ones wait,
parsed, in http1's queue), and each one is routed and checked anew. A request the router
decides from memory for the tunnel the idle lane leads to is forwarded at once; otherwise the
machine stops reading the client (`PAUSE`) and asks for a store lookup (`DECIDE`) or a channel
(`OPEN`). The response is parsed with the lane's `ClientConnection` and framed again for the
client, one `WRITE` per read from the channel; a `101` switches both sides to a raw relay. A
GET or HEAD that fails on a reused channel before anything came back is sent once more on a
fresh one; any other failure is the client's 502, as with nginx. The target decides
keep-alive: the lane stays for the next request only if both sides ended cleanly.

Backpressure: the client's full write buffer stops reading the channel (`UP_PAUSE`), the
channel's stops reading the client (`PAUSE`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from portway.hub.edge import headers as hdr
from portway.hub.edge import http1
from portway.hub.edge.actions import Asking, Op, Outbox
from portway.hub.edge.exchange import Exchange, Lane
from portway.hub.edge.pages import error_response
from portway.hub.edge.router import Deny, Forward
from portway.hub.edge.timeouts import Phase
from portway.wire.codes import Reason

log = logging.getLogger("portway.hub.edge")

MAX_HEAD = 64 * 1024  # a longer request head (request line and headers) is answered 431
DECIDING = frozenset({"decide"})  # the only pause under which the client is still parsed
UNAVAILABLE = Deny(503, "unavailable", "the hub cannot check this request right now")

Decider = Callable[[str, str, str], Forward | Deny | None]
Opening = tuple[Forward, http1.Request, str, Exchange | None]


class Conversation:
    def __init__(self, decide_now: Decider, *, client_ip: str, max_head: int = MAX_HEAD) -> None:
        self.decide_now = decide_now  # `Router.decide_now`: memory only, None if it cannot
        self.client_ip = client_ip
        self.h = http1.ServerConnection(max_head)
        self.out = Outbox()
        self.actions = self.out.actions  # what `EdgeConnection._run` carries out
        self.exchange: Exchange | None = None
        self.lane: Lane | None = None
        self.waiting = False  # a request head is being decided / its channel opened
        self.discarding = False  # the body of an answered request is being skipped
        self.raw = False  # after a 101: bytes relayed as they are
        self.closed = False  # the client connection is gone
        self.paused_by: set[str] = set()
        self.accept = ""  # the current request's Accept header (HTML or JSON error pages)
        self._asking: tuple[http1.Request, str] | None = None
        self._opening: Opening | None = None

    def excused(self) -> bool:
        """The client is not to blame for a slow body now (the `Watchdog` asks)."""
        return bool(self.paused_by) or self.h.they_are_waiting_for_100_continue

    # -- inputs from the client -------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if self.raw:
            if self.exchange is not None:
                self._send_body(self.exchange, data)
            return
        self.h.receive_data(data)
        self._pump()

    def receive_eof(self) -> bool:
        """The client half-closed; True keeps the connection open (a raw relay goes on)."""
        if self.raw:
            self.out.add(Op.UP_EOF)
            return True
        self.h.receive_data(b"")
        self._pump()
        return False

    def lost(self) -> None:
        self.closed = True
        x = self.exchange
        if x is not None and not x.finished:
            x.finished = True
            lane = self._drop_lane(abort=True)
            self._ended(x, lane)
        else:
            self._drop_lane(abort=False)

    def client_paused(self, paused: bool) -> None:
        """The client's write buffer went over (True) or back under (False) its limit."""
        if self.exchange is not None:
            self.out.up_pause(paused)

    # -- inputs from the upstream channel ---------------------------------------------------------

    def upstream_data(self, data: bytes) -> None:
        x, lane = self.exchange, self.lane
        if lane is None:
            return
        if x is None:
            self._drop_lane(abort=True)  # nothing is due from the target while idle
        elif self.raw:
            lane.bytes_b_to_a += len(data)
            x.bytes_b_to_a += len(data)
            self.out.write(data)
        elif not x.finished:
            lane.h.receive_data(data)
            self._relay(x, lane)

    def upstream_eof(self) -> bool:
        """The target half-closed; True keeps the channel open (a raw relay goes on)."""
        x, lane = self.exchange, self.lane
        if lane is None:
            return False
        lane.eof_in = True
        if x is None:
            self._drop_lane(abort=False)  # the target closed its idle keep-alive connection
            return False
        if self.raw:
            self.out.add(Op.EOF)
            return True
        lane.h.receive_data(b"")  # ends a response delimited by the close
        self._relay(x, lane)
        if not x.finished:
            self._fail(x)
        return False

    def upstream_lost(self) -> None:
        x, lane = self.exchange, self.lane
        if x is None or lane is None:
            self._drop_lane(abort=True)
        elif self.raw and lane.eof_in:  # a switched connection the target ended cleanly
            x.finished = True
            self._ended(x, self._drop_lane(abort=True))
        else:
            self._fail(x)

    def upstream_paused(self, paused: bool) -> None:
        """The channel's write buffer went over (True) or back under (False) its limit."""
        if paused:
            self._pause("upstream")
        else:
            self._resume("upstream")

    # -- answers to DECIDE and OPEN ---------------------------------------------------------------

    def decided(self, decision: Forward | Deny) -> None:
        if self.closed or self._asking is None:
            return
        (request, host), self._asking = self._asking, None
        self._decided(decision, request, host, None)

    def opened(self, lane: Lane, rest: bytes) -> None:
        """A channel to the tunnel of the pending `OPEN` came; `rest`: the target's bytes read."""
        if self.closed or self._opening is None:
            return
        (decision, request, host, failed), self._opening = self._opening, None
        self._forward(decision, request, host, lane, failed, rest)

    def open_failed(self, denial: Deny) -> None:
        if self.closed or self._opening is None:
            return
        (_, request, _, failed), self._opening = self._opening, None
        self._deny(denial, request, failed)

    # -- from outside: cuts and timeouts ----------------------------------------------------------

    def cut(self, why: Deny) -> None:
        """End the exchange now (its share stopped being usable, its tunnel paused or deleted,
        the body timeout): abort the channel, answer `why` if nothing of a response went out
        yet, else reset the connection so the client sees a truncated response. An idle lane
        is closed."""
        x = self.exchange
        if x is None or x.finished:
            self._drop_lane(abort=True)
            return
        x.finished = True
        lane = self._drop_lane(abort=True)
        answered = self.raw or self.h.our_state is not http1.SEND_RESPONSE
        self._ended(x, lane, None if answered else why.status, f"cut_{why.code}")
        if answered:
            self.out.add(Op.ABORT)
        else:
            self._close_with(why.status, why.code, why.message, why.headers)

    def reset(self, reason: Reason) -> None:
        """`Traffic.reset`: the lane's tunnel was paused, deleted or changed."""
        share = None if self.exchange is None else self.exchange.decision.share
        if reason is Reason.PAUSED:
            self.cut(Deny(503, "tunnel_paused", "the tunnel was paused", share=share))
        else:
            self.cut(Deny(502, "tunnel_closed", "the tunnel was deleted or changed", share=share))

    def timed_out(self, phase: Phase, partial: bool) -> None:
        """A phase outlived its timeout: 408 for a request head or body that stopped coming
        (cutting the exchange under way), silence for an idle or never-used connection."""
        if self.closed:
            return
        if phase is Phase.BODY:
            why = Deny(408, "request_timeout", "the request body stopped arriving")
            if self.exchange is not None:
                self.cut(why)
            elif self.h.our_state in (http1.IDLE, http1.SEND_RESPONSE):
                self._close_with(why.status, why.code, why.message, [])
            else:
                self.out.add(Op.CLOSE)  # answered; the rest never came
        elif phase is Phase.HEAD and partial:
            self._close_with(408, "request_timeout", "the request head took too long", [])
        else:
            self.out.add(Op.CLOSE)  # idle, or never a byte: no answer

    # -- the client side --------------------------------------------------------------------------

    def _pump(self) -> None:
        while not self.closed and not self.waiting and self.paused_by <= DECIDING:
            try:
                event = self.h.next_event()
            except http1.RemoteProtocolError as exc:
                self._bad_request(exc)
                return
            if event is http1.NEED_DATA or event is http1.PAUSED:
                return
            if isinstance(event, http1.Data):
                if self.exchange is not None and not self.discarding:
                    self._send_body(self.exchange, event.data)
            elif isinstance(event, http1.Request):
                self._request(event)
            elif isinstance(event, http1.EndOfMessage):
                self.out.add(Op.TIMER)
                if self.exchange is not None and not self.discarding:
                    self._end_body(self.exchange)
                self.discarding = False
                self._next_cycle()
            elif isinstance(event, http1.ConnectionClosed):
                if self.exchange is None:
                    self.out.add(Op.CLOSE)
                return

    def _request(self, request: http1.Request) -> None:
        self.out.add(Op.TIMER, (Phase.BODY, False))  # excused while deciding
        host, self.accept = hdr.host_and_accept(request.headers)
        method, target = request.method.decode("latin-1"), request.target.decode("latin-1")
        try:
            decision = self.decide_now(method, target, host)
        except Exception:
            log.exception("edge policy failed")
            decision = UNAVAILABLE
        if decision is not None:
            self._decided(decision, request, host, None)
            return
        self._wait()
        self._asking = (request, host)
        self.out.add(Op.DECIDE, Asking(method, target, host))

    def _decided(
        self, decision: Forward | Deny, request: http1.Request, host: str, failed: Exchange | None
    ) -> None:
        if isinstance(decision, Deny):
            self._deny(decision, request, failed)
            return
        lane = self.lane
        if lane is not None and lane.usable_for(decision.route.id) and self.exchange is None:
            self._forward(decision, request, host, lane, failed, b"")
            return
        self._drop_lane(abort=False)  # another tunnel (Host switched)
        self._wait()
        self._opening = (decision, request, host, failed)
        self.out.add(Op.OPEN, decision)

    def _forward(self, decision: Forward, request: http1.Request, host: str, lane: Lane,
                 failed: Exchange | None, rest: bytes) -> None:  # fmt: skip
        """Send the request head upstream on `lane`; its body and the response follow."""
        x = Exchange(decision, request, reused=lane.uses > 0)
        lane.uses += 1
        self.lane, self.exchange = lane, x
        self.out.set_live(None if decision.share is None else decision.share.id)
        head = http1.Request(
            request.method,
            decision.target.encode("latin-1"),
            hdr.upstream_request_headers(request.headers, client_ip=self.client_ip, host=host),
        )
        self.out.up_write(lane.h.send(head))
        if rest:
            self.upstream_data(rest)
        if not self.waiting:
            return  # decided from memory inside `_pump`, which goes on by itself
        self.waiting = False
        if failed is not None and failed.request_done:  # its EndOfMessage went to `failed`
            if not x.finished:
                self._end_body(x)
            else:
                self._next_cycle()
        # What h11 holds already (at least a bodyless request's EndOfMessage) goes upstream
        # now, so the body timeout stops as soon as the request is complete.
        self._resume("decide")

    def _deny(self, denial: Deny, request: http1.Request, failed: Exchange | None) -> None:
        """Answer `denial`; the rest of the request is read and skipped, then the next."""
        self.waiting = False
        self.out.log(denial, request, denial.status, None, None)
        self._answer_error(denial.status, denial.code, denial.message, denial.headers)
        if failed is not None and failed.request_done:
            self._next_cycle()
        self._resume("decide")

    def _send_body(self, x: Exchange, data: bytes) -> None:
        lane = self.lane
        if lane is None:
            return
        x.bytes_a_to_b += len(data)
        lane.bytes_a_to_b += len(data)
        if self.raw:
            self.out.up_write(data)
        elif lane.h.our_state is http1.SEND_BODY:
            self.out.up_write(lane.h.send(http1.Data(data=data)))

    def _end_body(self, x: Exchange) -> None:
        x.request_done = True
        lane = self.lane
        if lane is not None and lane.h.our_state is http1.SEND_BODY:
            self.out.up_write(lane.h.send(http1.EndOfMessage()))

    def _next_cycle(self) -> None:
        # Close only once our response is complete: a request that says `Connection: close`
        # is done (theirs MUST_CLOSE) long before its answer is.
        if self.h.our_state is http1.MUST_CLOSE:
            self.out.add(Op.CLOSE)
            return
        if self.h.our_state is http1.DONE and self.h.their_state is http1.DONE:
            self.h.start_next_cycle()
            pipelined = self.h.pending  # the next head, or part of it, is here
            self.out.add(Op.TIMER, (Phase.HEAD if pipelined else Phase.IDLE, pipelined))
            self._resume("decide")

    # -- the response side ------------------------------------------------------------------------

    def _relay(self, x: Exchange, lane: Lane) -> None:
        """Relay the response events parsed so far; what they make for the client is one
        `WRITE` (head, body and end of a small response together)."""
        h = lane.h
        while not x.finished:
            try:
                event = h.next_event()
            except http1.RemoteProtocolError:
                self._fail(x)
                return
            if event is http1.NEED_DATA or event is http1.PAUSED:
                return
            if isinstance(event, http1.Data):  # the most frequent first
                lane.bytes_b_to_a += len(event.data)
                x.bytes_b_to_a += len(event.data)
                self.out.write(self.h.send(event))
            elif isinstance(event, http1.Response):
                x.status = event.status_code
                heads = hdr.client_response_headers(
                    event.headers, x.decision.headers, switching=False
                )
                self.out.write(self.h.send(http1.Response(event.status_code, heads, event.reason)))
            elif isinstance(event, http1.EndOfMessage):
                x.response_done = True
                self.out.write(self.h.send(event))
                self._finish(x, lane)
                if self.h.their_state is http1.SEND_BODY:
                    self.discarding = True  # the answer went out; skip the rest of the body
                self._next_cycle()
                return
            elif isinstance(event, http1.InformationalResponse):
                if event.status_code == 101:
                    self._switch(x, lane, event)
                    return
                x.informed = True
                heads = hdr.client_response_headers(event.headers, [], switching=False)
                self.out.write(self.h.send(
                    http1.InformationalResponse(status_code=event.status_code, headers=heads)
                ))  # fmt: skip
            elif isinstance(event, http1.ConnectionClosed):
                self._fail(x)
                return

    def _switch(self, x: Exchange, lane: Lane, event: http1.InformationalResponse) -> None:
        """A `101`: from now on bytes go as they are, both ways, with no timeout."""
        x.status = 101
        self.raw = True
        heads = hdr.client_response_headers(event.headers, x.decision.headers, switching=True)
        self.out.write(self.h.send(http1.InformationalResponse(status_code=101, headers=heads)))
        pending, _ = lane.h.trailing_data
        if pending:
            lane.bytes_b_to_a += len(pending)
            x.bytes_b_to_a += len(pending)
            self.out.write(bytes(pending))
        self.out.add(Op.TIMER)  # a WebSocket may stay quiet for as long as it likes
        pending, _ = self.h.trailing_data
        if pending:
            self._send_body(x, bytes(pending))
        self._resume("decide")

    def _finish(self, x: Exchange, lane: Lane) -> None:
        """The response is complete: keep the lane idle for the next request if both sides
        can go on, else end it cleanly (the target connection ends with it)."""
        x.finished = True
        if not self.raw and lane.can_go_on():
            lane.h.start_next_cycle()
            self.out.up_pause(False)  # an EOF from the target must be seen while idle
        else:
            self._drop_lane(abort=self.raw)
        self._ended(x, lane)

    def _fail(self, x: Exchange) -> None:
        """The channel broke or sent garbage: 502 if nothing was answered yet, else reset;
        a stale reused channel is retried once (`Exchange.retryable`)."""
        x.finished = True
        lane = self._drop_lane(abort=True)
        answered = self.h.our_state is not http1.SEND_RESPONSE
        if not self.raw and not answered and x.retryable() and not self.closed:
            self.exchange = None  # resent on a fresh channel, unlogged
            self.out.set_live(None)
            host = next((v for n, v in x.request.headers if n.lower() == b"host"), b"")
            self._wait()
            self._opening = (x.decision, x.request, host.decode("latin-1"), x)
            self.out.add(Op.OPEN, x.decision)
            return
        self._ended(x, lane)
        if answered or self.raw:
            self.out.add(Op.ABORT)
            return
        self._answer_error(502, "bad_gateway", "the target closed the connection", [])
        self._next_cycle()  # the request may have been read whole already

    def _ended(self, x: Exchange, lane: Lane | None, status: int | None = None,
               reason: str | None = None) -> None:  # fmt: skip
        """`x` is over, whatever ended it: log it, and end a raw relay with it."""
        if self.exchange is x:
            self.out.log(x.decision, x.request, status or x.status or 502, x, reason)
            self.exchange = None
            share = x.decision.share  # an idle lane stays cuttable through its last share
            self.out.set_live(share.id if share is not None and self.lane is not None else None)
        if self.raw:
            eof = lane is not None and lane.eof_in
            self.out.add(Op.CLOSE if eof else Op.ABORT)  # CLOSE flushes, then FIN
        elif "upstream" in self.paused_by:
            self._resume("upstream")  # the channel is gone; it cannot drain any more

    def _drop_lane(self, *, abort: bool) -> Lane | None:
        """End the lane's channel: FIN (the agent closes its target connection), or abort."""
        lane = self.lane
        if lane is None:
            return None
        lane.closed = True
        self.lane = None
        self.out.up_paused = False
        self.out.add(Op.UP_CLOSE, abort)
        if self.exchange is None:
            self.out.set_live(None)
        return lane

    # -- small steps ------------------------------------------------------------------------------

    def _wait(self) -> None:
        self.waiting = True
        self._pause("decide")

    def _pause(self, why: str) -> None:
        if not self.paused_by:
            self.out.add(Op.PAUSE, True)
        self.paused_by.add(why)

    def _resume(self, why: str) -> None:
        if why in self.paused_by:
            self.paused_by.discard(why)
            if not self.paused_by:
                self.out.add(Op.PAUSE, False)
        if not self.paused_by and not self.raw:
            self._pump()

    def _bad_request(self, exc: http1.RemoteProtocolError) -> None:
        if exc.status_hint == 431:
            self._close_with(431, "head_too_large", "the request head is too large", [])
        else:
            self._close_with(400, "bad_request", "malformed HTTP request", [])

    def _close_with(
        self, status: int, code: str, message: str, extra: list[tuple[str, str]]
    ) -> None:
        """Answer with an error page if no response was started, then close the connection."""
        self.out.add(Op.TIMER)
        if self.h.our_state in (http1.IDLE, http1.SEND_RESPONSE):
            with contextlib.suppress(http1.LocalProtocolError):
                closing = [*extra, ("Connection", "close")]
                self.out.write(error_response(self.h, status, code, message, self.accept, closing))
        self.out.add(Op.CLOSE)

    def _answer_error(
        self, status: int, code: str, message: str, extra: list[tuple[str, str]]
    ) -> None:
        if self.h.their_state is http1.SEND_BODY:
            self.discarding = True
        try:
            self.out.write(error_response(self.h, status, code, message, self.accept, extra))
        except http1.LocalProtocolError:
            self.out.add(Op.ABORT)
