"""What the edge's state machine (conversation.py) knows of one request and of its upstream
channel. No I/O here.

An `Exchange` is one forwarded request: its decision, its head, what it moved, how far its
response got; `entries.share_entry` reads it for the access log. A `Lane` is the upstream
channel of a client connection (a stream to the target, and the http1 `ClientConnection` over
it), kept across requests routed to the same tunnel the way nginx `keepalive` upstreams are;
`EdgeConnection` (connection.py) counts its bytes for `Traffic` while it lives.

"""

from __future__ import annotations

import time
import uuid

from portway.hub.edge import http1
from portway.hub.edge.router import Forward

RETRYABLE = frozenset({b"GET", b"HEAD"})  # resent once when a reused channel turned out stale


class Exchange:
    """One forwarded request. `bytes_a_to_b` is request body towards the target,
    `bytes_b_to_a` response body towards the client; `started` is `time.monotonic()`."""

    __slots__ = (
        "bytes_a_to_b",
        "bytes_b_to_a",
        "decision",
        "finished",
        "informed",
        "request",
        "request_done",
        "response_done",
        "reused",
        "started",
        "status",
    )  # fmt: skip

    def __init__(self, decision: Forward, request: http1.Request, reused: bool) -> None:
        self.decision = decision
        self.request = request
        self.reused = reused  # its channel carried an earlier request
        self.started = time.monotonic()
        self.status = 0
        self.informed = False  # a 1xx went to the client
        self.bytes_a_to_b = 0
        self.bytes_b_to_a = 0
        self.request_done = False  # its EndOfMessage was read from the client
        self.response_done = False
        self.finished = False

    def retryable(self) -> bool:
        """A reused channel failed before anything came back for a GET/HEAD without a body:
        the target most likely closed its idle keep-alive connection; resend on a fresh one."""
        return (
            self.reused and self.status == 0 and not self.informed and self.bytes_a_to_b == 0
            and self.request.method.upper() in RETRYABLE
        )  # fmt: skip


class Lane:
    """The upstream channel: its tunnel, its HTTP/1.1 client state and its byte counters
    (the counters cover every exchange the channel carried, for `Traffic`)."""

    __slots__ = ("bytes_a_to_b", "bytes_b_to_a", "closed", "eof_in", "h", "tunnel_id", "uses")

    def __init__(self, tunnel_id: uuid.UUID) -> None:
        self.tunnel_id = tunnel_id
        self.h = http1.ClientConnection()
        self.uses = 0
        self.eof_in = False  # the target finished sending (the stream's FIN)
        self.closed = False
        self.bytes_a_to_b = 0
        self.bytes_b_to_a = 0

    def usable_for(self, tunnel_id: uuid.UUID) -> bool:
        return not self.closed and self.tunnel_id == tunnel_id

    def can_go_on(self) -> bool:
        """Both the request and the response ended cleanly and nothing is left over: the
        channel may carry the next request."""
        h = self.h
        return (
            not self.closed and not self.eof_in and h.our_state is http1.DONE
            and h.their_state is http1.DONE and not h.pending and not h.trailing_data[1]
        )  # fmt: skip
