"""The response half of an edge conversation: the target's answer, relayed to the client.

`ResponseSide` sits between `RequestSide` (request_side.py), whose fields and steps it uses,
and `Conversation` (conversation.py), whose upstream inputs feed it. It parses the response with
the lane's `ClientConnection` and frames it again for the client, one `WRITE` per read from the
channel; switches both sides to a raw relay on a `101`; keeps the lane for the next request or
ends it; turns a broken channel into a retry on a fresh one, a 502 or a reset; and logs each
exchange as it ends.
"""

from __future__ import annotations

from portway.hub.edge import headers as hdr
from portway.hub.edge import http1
from portway.hub.edge.actions import Op
from portway.hub.edge.exchange import Exchange, Lane
from portway.hub.edge.request_side import RequestSide


class ResponseSide(RequestSide):
    """The response half of a conversation; see the module docs."""

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
            elif isinstance(event, http1.PeerClosed):
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
