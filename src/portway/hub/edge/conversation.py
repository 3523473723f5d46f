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

from portway.hub.edge import http1
from portway.hub.edge.actions import Op
from portway.hub.edge.exchange import Lane
from portway.hub.edge.response_side import ResponseSide
from portway.hub.edge.router import Deny, Forward
from portway.hub.edge.timeouts import Phase
from portway.wire.codes import Reason


class Conversation(ResponseSide):
    """One client connection's state machine: its inputs here, the request half in
    `RequestSide` (request_side.py), the response half in `ResponseSide` (response_side.py)."""

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
