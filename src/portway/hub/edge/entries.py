"""Access-log entries of share requests, built from what the edge knows when a request ends.

`EdgeConnection` (connection.py) calls `share_entry()` for each `Op.LOG` of its conversation:
when a share request is denied, when its exchange ends (complete, failed, or cut with a
`cut_<why>` reason); it hands the entry to `AccessLog.add()`, which writes in batches off the
request path.
"""

from __future__ import annotations

import time
from datetime import datetime

from portway.hub.edge import http1
from portway.hub.edge.exchange import Exchange
from portway.hub.edge.router import Deny, Forward, split_share
from portway.store.shares import Access


def share_entry(
    decision: Forward | Deny, request: http1.Request, status: int, exchange: Exchange | None, *,
    client_ip: str, at: datetime, reason: str | None = None,
) -> Access | None:  # fmt: skip
    """The entry for a request on a share, or None for a public-URL request (not logged)."""
    share = decision.share
    if share is None:
        return None
    agent = next((v for n, v in request.headers if n.lower() == b"user-agent"), None)
    return Access(
        share_id=share.id, workspace_id=share.workspace_id, at=at, remote_addr=client_ip,
        method=request.method.decode("latin-1"),
        path=without_token(request.target.decode("latin-1")), status=status,
        allowed=isinstance(decision, Forward),
        reason=reason or (None if isinstance(decision, Forward) else decision.code),
        user_agent=None if agent is None else agent.decode("latin-1"),
        bytes_in=None if exchange is None else exchange.bytes_a_to_b,
        bytes_out=None if exchange is None else exchange.bytes_b_to_a,
        latency_ms=None if exchange is None else _elapsed_ms(exchange.started),
    )  # fmt: skip


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def without_token(target: str) -> str:
    """The path a share request asked for, never the token itself (logs must not hold it)."""
    shared = split_share(target)
    return target if shared is None else shared[1] or "/"
