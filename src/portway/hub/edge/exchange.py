"""One proxied request: the data channel's protocol, relaying the response to the client.

`EdgeConnection` (proxy.py) creates an `Exchange` per forwarded request on the connection's
upstream `Lane` (upstream.py: a fresh channel from `Pairing`, or the one the previous request
left idle) and adopts the channel with `attach()` in the same step. The request head goes out at
once; body events follow via `send_body()`/`end_body()`. The response is parsed with the lane's
`http1.ClientConnection` and re-framed for the client chunk by chunk inside `data_received` (no
await anywhere); a `101` switches both sides to a raw relay. Backpressure: a full client buffer
pauses reading the channel, a full channel buffer pauses reading the client. When the response
is complete the lane decides whether the channel stays open for the next request
(`Lane.release`); the target decides keep-alive, the edge sends no `Connection: close`.

`cut()` ends an exchange from outside, mid-flight: `LiveShares.sweep` (cut.py) when its share
stopped being usable, `Traffic.reset` (through `Lane.reset` and `reset()`) when its tunnel is
paused or deleted, and the connection's body timeout. The channel is aborted; the client gets
the edge's own answer if nothing of the response went out yet, else a reset connection (a
truncated body).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, cast

from portway.hub.edge import headers as hdr
from portway.hub.edge import http1
from portway.hub.edge.policy import Deny, Forward
from portway.net.splice import hard_close
from portway.wire.codes import Reason

if TYPE_CHECKING:
    from portway.hub.edge.proxy import EdgeConnection
    from portway.hub.edge.upstream import Lane

LIMIT = 256 * 1024
RETRYABLE = frozenset({b"GET", b"HEAD"})  # resent once when a reused channel turned out stale


class Exchange(asyncio.Protocol):
    def __init__(
        self, client: EdgeConnection, decision: Forward, request: http1.Request, lane: Lane
    ) -> None:
        self.client = client
        self.decision = decision
        self.request = request
        self.lane = lane
        self.reused = lane.uses > 0  # the channel carried an earlier request
        self.started = time.monotonic()
        self.upstream = lane.h
        self.transport: asyncio.Transport | None = None
        self.informed = False  # a 1xx went to the client
        self.bytes_a_to_b = 0  # request body bytes towards the target
        self.bytes_b_to_a = 0  # response body bytes towards the client
        self.status = 0
        self.raw = False  # after 101: bytes relayed as they are
        self.finished = False
        self.response_done = False
        self.request_done = False

    # -- set-up and request direction (called by EdgeConnection) ----------------------------------

    def attach(self, head: http1.Request) -> None:
        rest = self.lane.take(self)
        transport = self.transport = self.lane.transport
        transport.set_write_buffer_limits(high=LIMIT)
        self._write(self.upstream.send(head))
        if rest:
            self.data_received(rest)

    def _write(self, data: bytes | None) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_body(self, data: bytes) -> None:
        self.bytes_a_to_b += len(data)
        if self.raw:
            self._write(data)
        elif self.upstream.our_state is http1.SEND_BODY:
            self._write(self.upstream.send(http1.Data(data=data)))

    def end_body(self) -> None:
        self.request_done = True
        if self.upstream.our_state is http1.SEND_BODY:
            self._write(self.upstream.send(http1.EndOfMessage()))

    def client_eof(self) -> None:
        """Raw mode: the client finished sending."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write_eof()

    # -- response direction (asyncio callbacks of the channel) -------------------------------------

    @property
    def eof_in(self) -> bool:
        """The target finished sending (its stream's FIN)."""
        return self.lane.eof_in

    def data_received(self, data: bytes) -> None:
        if self.finished:
            return
        if self.raw:
            self.bytes_b_to_a += len(data)
            self.client.write(data)
            return
        self.upstream.receive_data(data)
        self._pump()

    def _pump(self) -> None:
        """Relay the response events parsed so far; what they make for the client goes out in
        one write per read from the channel (head, body and end of a small response together)."""
        out: list[bytes] = []
        while not self.finished:
            try:
                event = self.upstream.next_event()
            except http1.RemoteProtocolError:
                self._flush(out)
                self.fail()
                return
            if event is http1.NEED_DATA or event is http1.PAUSED:
                self._flush(out)
                return
            if isinstance(event, http1.Data):  # the most frequent first
                self.bytes_b_to_a += len(event.data)
                out.append(self.client.frame(event))
            elif isinstance(event, http1.Response):
                self.status = event.status_code
                heads = hdr.client_response_headers(
                    event.headers, self.decision.headers, switching=False
                )
                out.append(self.client.frame(
                    http1.Response(event.status_code, heads, event.reason)
                ))  # fmt: skip
            elif isinstance(event, http1.EndOfMessage):
                self.response_done = True
                out.append(self.client.frame(event))
                self._flush(out)
                self.finish()
                self.client.exchange_done(self)
                return
            elif isinstance(event, http1.InformationalResponse):
                if event.status_code == 101:
                    self._flush(out)
                    self._switch(event)
                    return
                self.informed = True
                out.append(self.client.frame(http1.InformationalResponse(
                    status_code=event.status_code,
                    headers=hdr.client_response_headers(event.headers, [], switching=False),
                )))  # fmt: skip
            elif isinstance(event, http1.ConnectionClosed):
                self._flush(out)
                self.fail()
                return
        self._flush(out)

    def _flush(self, out: list[bytes]) -> None:
        if out:
            self.client.write_all(out)
            out.clear()

    def _switch(self, event: http1.InformationalResponse) -> None:
        self.status = 101
        self.raw = True
        heads = hdr.client_response_headers(event.headers, self.decision.headers, switching=True)
        self.client.send(http1.InformationalResponse(status_code=101, headers=heads))
        pending, _ = self.upstream.trailing_data
        if pending:
            self.bytes_b_to_a += len(pending)
            self.client.write(bytes(pending))
        self.client.switch_to_raw(self)

    def eof_received(self) -> bool:
        self.lane.eof_in = True
        if self.finished:
            return False
        if self.raw:
            self.client.raw_eof()
            return True  # the client may still be sending
        self.upstream.receive_data(b"")  # ends a response delimited by the close
        self._pump()
        if not self.finished:
            self.fail()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.finished:
            return
        if self.raw and self.eof_in:  # a switched connection the target ended cleanly
            self.finished = True
            self._abort()
            self.client.exchange_closed(self)
            return
        self.fail()

    def pause_writing(self) -> None:
        self.client.pause_reading()

    def resume_writing(self) -> None:
        self.client.resume_reading()

    # -- ending -----------------------------------------------------------------------------------

    def finish(self) -> None:
        """The response is complete: the lane keeps the channel for the next request if both
        sides can go on, else ends it cleanly (the target connection ends with it)."""
        if self.finished:
            return
        self.finished = True
        self.lane.release(self, reusable=not self.raw)
        self.client.exchange_closed(self)

    def _abort(self) -> None:
        self.lane.release(self, reusable=False)

    def retryable(self) -> bool:
        """A reused channel failed before anything came back for a GET/HEAD without a body:
        the target most likely closed its idle keep-alive connection; resend on a fresh one."""
        return (
            self.reused and not self.raw and self.status == 0 and not self.informed
            and self.bytes_a_to_b == 0 and self.request.method.upper() in RETRYABLE
        )  # fmt: skip

    def fail(self) -> None:
        """The channel broke or sent garbage: 502 if nothing was answered yet, else reset."""
        if self.finished:
            return
        self.finished = True
        self._abort()
        self.client.exchange_failed(self)

    def reset(self, reason: Reason = Reason.CLOSED) -> None:
        """Called by `Traffic` when the tunnel is paused, deleted or moved, or the hub stops."""
        if reason is Reason.PAUSED:
            self.cut(Deny(503, "tunnel_paused", "the tunnel was paused", share=self.decision.share))
        else:
            message = "the tunnel was deleted or changed"
            self.cut(Deny(502, "tunnel_closed", message, share=self.decision.share))

    def client_gone(self) -> None:
        """Called by `EdgeConnection.connection_lost`: the client left; end the channel."""
        if self.finished:
            return
        self.finished = True
        self._abort()
        self.client.exchange_closed(self)

    def cut(self, why: Deny) -> None:
        """End the exchange now: abort the channel, then let the client connection answer
        `why` (nothing was sent yet) or reset (a response or raw relay was under way)."""
        if self.finished:
            return
        self.finished = True
        self._abort()
        self.client.exchange_cut(self, why)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


def abort_client(transport: asyncio.BaseTransport) -> None:
    hard_close(cast(asyncio.Transport, transport))
