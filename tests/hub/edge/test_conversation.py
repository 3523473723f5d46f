"""The edge's state machine with no sockets: bytes and answers in, actions out.

These pin the decisions `Conversation` makes on its own (what to reuse, when to retry, what the
client gets when the target misbehaves, when reading stops); `tests/e2e/test_edge*.py` drive the
same machine through real sockets, a hub and an agent.
"""

from __future__ import annotations

import uuid
from typing import Any

from portway.hub.dataplane import routes
from portway.hub.edge.actions import Logged, Op
from portway.hub.edge.conversation import Conversation
from portway.hub.edge.exchange import Lane
from portway.hub.edge.router import Deny, Forward, ShareRef
from portway.hub.edge.timeouts import Phase
from portway.wire.codes import Reason

GET = b"GET /a HTTP/1.1\r\nHost: app.example\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"


def route(name: str = "app") -> routes.Route:
    return routes.Route(
        id=uuid.uuid4(), workspace_id=uuid.uuid4(), agent_id=uuid.uuid4(), name=name,
        protocol="http", host="127.0.0.1", port=80, public=True, hub_port=None, paused=False,
    )  # fmt: skip


class Harness:
    """A conversation whose router answers `self.decision` from memory (None: ask the store),
    with helpers that play the adapter's part."""

    def __init__(self, decision: Forward | Deny | None) -> None:
        self.decision = decision
        self.conv = Conversation(lambda m, t, h: self.decision, client_ip="192.0.2.1")
        self.lanes: list[Lane] = []

    def take(self) -> list[tuple[Op, Any]]:
        out = list(self.conv.actions)
        self.conv.actions.clear()
        return out

    def ops(self) -> list[Op]:
        return [op for op, _ in self.take()]

    def open(self, rest: bytes = b"") -> Lane:
        """Answer the pending OPEN with a fresh lane."""
        assert isinstance(self.decision, Forward)
        lane = Lane(self.decision.route.id)
        self.lanes.append(lane)
        self.conv.opened(lane, rest)
        return lane


def written(actions: list[tuple[Op, Any]], op: Op = Op.WRITE) -> bytes:
    parts: list[bytes] = []
    for o, arg in actions:
        if o is op:
            parts.extend(arg if isinstance(arg, list) else [arg])
    return b"".join(parts)


def test_a_fresh_request_opens_a_channel_and_the_next_one_reuses_it() -> None:
    h = Harness(Forward(route(), "/a"))
    h.conv.receive(GET)
    first = h.take()
    assert (Op.PAUSE, True) in first and [a for a in first if a[0] is Op.OPEN]
    h.open()
    sent = h.take()
    assert written(sent, Op.UP_WRITE).startswith(b"GET /a HTTP/1.1\r\n")
    assert b"X-Forwarded-For: 192.0.2.1" in written(sent, Op.UP_WRITE)
    h.conv.upstream_data(OK)
    answer = h.take()
    assert written(answer).endswith(b"\r\n\r\nhi")
    assert (Op.UP_CLOSE, False) not in answer and h.conv.lane is h.lanes[0]
    h.conv.receive(GET)  # routed to the same tunnel: no OPEN, no pause
    again = h.take()
    assert not [a for a in again if a[0] in (Op.OPEN, Op.PAUSE, Op.DECIDE)]
    assert written(again, Op.UP_WRITE).startswith(b"GET /a")
    assert h.lanes[0].uses == 2


def test_a_store_lookup_pauses_the_client_until_it_is_answered() -> None:
    h = Harness(None)
    h.conv.receive(GET + b"GET /b HTTP/1.1\r\nHost: app.example\r\n\r\n")
    assert [a for a in h.take() if a[0] is Op.DECIDE]
    h.conv.decided(Deny(403, "forbidden", "no"))
    denied = h.take()
    assert written(denied).startswith(b"HTTP/1.1 403")
    assert [a for a in denied if a[0] is Op.DECIDE]  # the pipelined request is looked up next


def test_a_stale_reused_channel_gets_the_get_once_more_on_a_fresh_one() -> None:
    h = Harness(Forward(route(), "/a"))
    h.conv.receive(GET)
    h.open()
    h.conv.upstream_data(OK)
    h.conv.receive(GET)
    h.take()
    h.conv.upstream_eof()  # the target had closed its idle connection
    retry = h.take()
    assert (Op.UP_CLOSE, True) in retry and [a for a in retry if a[0] is Op.OPEN]
    assert not written(retry)  # the client sees nothing of it
    h.open()
    assert written(h.take(), Op.UP_WRITE).startswith(b"GET /a")
    h.conv.upstream_data(OK)
    assert written(h.take()).startswith(b"HTTP/1.1 200")


def test_a_target_that_breaks_before_answering_is_a_502() -> None:
    h = Harness(Forward(route(), "/a"))
    h.conv.receive(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz")
    h.open()
    h.take()
    h.conv.upstream_data(b"garbage\r\n\r\n")
    failed = h.take()
    assert written(failed).startswith(b"HTTP/1.1 502")
    assert (Op.UP_CLOSE, True) in failed


def test_a_full_channel_stops_reading_the_client_and_a_full_client_the_channel() -> None:
    h = Harness(Forward(route(), "/a"))
    h.conv.receive(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    h.open()
    h.take()
    h.conv.upstream_paused(True)
    assert (Op.PAUSE, True) in h.take()
    h.conv.upstream_paused(False)
    assert (Op.PAUSE, False) in h.take()
    h.conv.client_paused(True)
    assert (Op.UP_PAUSE, True) in h.take()
    h.conv.client_paused(True)  # said once only
    assert h.take() == []


def test_a_101_relays_both_ways_raw_and_a_clean_target_eof_closes_after_the_flush() -> None:
    h = Harness(Forward(route(), "/ws"))
    h.conv.receive(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    )
    h.open()
    h.take()
    h.conv.upstream_data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n\r\nhello")  # fmt: skip
    switched = h.take()
    assert written(switched).startswith(b"HTTP/1.1 101") and written(switched).endswith(b"hello")
    assert (Op.TIMER, None) in switched
    h.conv.receive(b"\x81\x00")
    assert written(h.take(), Op.UP_WRITE) == b"\x81\x00"
    assert h.conv.upstream_eof() is True
    assert (Op.EOF, None) in h.take()
    h.conv.upstream_lost()
    assert (Op.CLOSE, None) in h.take()


def test_a_cut_share_answers_its_reason_or_resets_a_started_response() -> None:
    share = ShareRef(uuid.uuid4(), uuid.uuid4())
    h = Harness(Forward(route(), "/a", share=share))
    h.conv.receive(GET)
    h.open()
    live = h.take()
    assert (Op.LIVE, share.id) in live
    h.conv.cut(Deny(410, "share_revoked", "revoked", share=share))
    cut = h.take()
    assert written(cut).startswith(b"HTTP/1.1 410") and (Op.CLOSE, None) in cut
    logs = [arg for op, arg in cut if op is Op.LOG]
    assert isinstance(logs[0], Logged) and logs[0].reason == "cut_share_revoked"
    assert (Op.LIVE, None) in cut


def test_a_paused_tunnel_resets_a_response_under_way() -> None:
    h = Harness(Forward(route(), "/a"))
    h.conv.receive(GET)
    h.open()
    h.conv.upstream_data(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    h.take()
    h.conv.reset(Reason.PAUSED)
    assert [op for op, _ in h.take() if op in (Op.ABORT, Op.UP_CLOSE)] == [Op.UP_CLOSE, Op.ABORT]


def test_timeouts_answer_408_for_a_partial_head_and_close_an_idle_connection() -> None:
    h = Harness(Forward(route(), "/a"))
    h.conv.receive(b"GET /a HT")
    h.take()
    h.conv.timed_out(Phase.HEAD, True)
    assert written(h.take()).startswith(b"HTTP/1.1 408")
    idle = Harness(Forward(route(), "/a"))
    idle.conv.timed_out(Phase.IDLE, False)
    assert idle.take() == [(Op.CLOSE, None)]


def test_a_malformed_head_is_a_400_and_an_oversized_one_a_431() -> None:
    h = Harness(None)
    h.conv.receive(b"NOT HTTP\r\n\r\n")
    assert written(h.take()).startswith(b"HTTP/1.1 400")
    big = Harness(None)
    big.conv.receive(b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n")
    assert written(big.take()).startswith(b"HTTP/1.1 431")
