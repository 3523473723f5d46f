"""The request half of an edge conversation: the client's requests, routed and sent upstream.

`RequestSide` is the base of `Conversation` (conversation.py) that parses the client's bytes
with http1's `ServerConnection` and, for each request head, asks the router (`decide_now`, or a
`DECIDE`, then an `OPEN` for a channel), forwards head and body on the lane's channel, or
answers a denial; it pauses and resumes reading the client (`PAUSE`) and writes the error pages
of either half. It holds the fields of the whole conversation; the response half
(`ResponseSide`, response_side.py) and the inputs (`Conversation`) build on it.
"""

from __future__ import annotations

import abc
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

log = logging.getLogger("portway.hub.edge")

MAX_HEAD = 64 * 1024  # a longer request head (request line and headers) is answered 431
DECIDING = frozenset({"decide"})  # the only pause under which the client is still parsed
UNAVAILABLE = Deny(503, "unavailable", "the hub cannot check this request right now")

Decider = Callable[[str, str, str], Forward | Deny | None]
Opening = tuple[Forward, http1.Request, str, Exchange | None]


class RequestSide(abc.ABC):
    """The fields of one conversation and its request half; see the module docs."""

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

    @abc.abstractmethod
    def upstream_data(self, data: bytes) -> None:
        """The target's bytes from the lane's channel (`Conversation`): `_forward` passes on
        those that came with a new channel."""

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
            elif isinstance(event, http1.PeerClosed):
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

    # -- small steps ------------------------------------------------------------------------------

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
