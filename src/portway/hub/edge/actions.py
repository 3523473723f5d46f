"""What the edge's state machine asks its adapter to do, in the order it asks.

`Conversation` (conversation.py) appends `(Op, argument)` pairs to its `Outbox` while it handles
one input; `EdgeConnection._run` (connection.py) carries them out right after, in order.
Consecutive client writes are one `WRITE` of a list of buffers; a pause, a resume and the live
share are said only when they change.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

from portway.hub.edge import http1
from portway.hub.edge.exchange import Exchange
from portway.hub.edge.router import Deny, Forward


class Op(enum.Enum):
    """What the adapter does, with the argument the machine gives."""

    WRITE = enum.auto()  # list[bytes]: to the client
    UP_WRITE = enum.auto()  # bytes: to the target
    UP_EOF = enum.auto()  # None: half-close towards the target (raw relay)
    EOF = enum.auto()  # None: half-close towards the client (raw relay), or close
    CLOSE = enum.auto()  # None: flush what is queued for the client, then close
    ABORT = enum.auto()  # None: reset the client connection
    PAUSE = enum.auto()  # bool: stop (True) or go on (False) reading the client
    UP_PAUSE = enum.auto()  # bool: stop or go on reading the target
    DECIDE = enum.auto()  # Asking: the router must look this request up in the store
    OPEN = enum.auto()  # Forward: a new channel to the decision's tunnel is wanted
    UP_CLOSE = enum.auto()  # bool: end the lane's channel; True aborts, False sends FIN
    LIVE = enum.auto()  # uuid.UUID | None: the share whose revocation must cut this connection
    LOG = enum.auto()  # Logged: one share request ended
    TIMER = enum.auto()  # tuple[Phase, bool] | None: the client phase to time, None for none


class Asking:
    """A request head the router could not decide from memory (`Op.DECIDE`)."""

    __slots__ = ("host", "method", "target")

    def __init__(self, method: str, target: str, host: str) -> None:
        self.method, self.target, self.host = method, target, host


class Logged:
    """A share request that ended (`Op.LOG`); `exchange` is None for a denied one."""

    __slots__ = ("decision", "exchange", "reason", "request", "status")

    def __init__(
        self, decision: Forward | Deny, request: http1.Request, status: int,
        exchange: Exchange | None, reason: str | None,
    ) -> None:  # fmt: skip
        self.decision, self.request, self.status = decision, request, status
        self.exchange, self.reason = exchange, reason


class Outbox:
    __slots__ = ("actions", "live", "up_paused")

    def __init__(self) -> None:
        self.actions: list[tuple[Op, Any]] = []
        self.live: uuid.UUID | None = None  # the share `LiveShares` knows this connection by
        self.up_paused = False  # reading the upstream channel is stopped

    def add(self, op: Op, arg: Any = None) -> None:
        self.actions.append((op, arg))

    def write(self, data: bytes) -> None:
        if not data:
            return
        actions = self.actions
        if actions and actions[-1][0] is Op.WRITE:
            actions[-1][1].append(data)
        else:
            actions.append((Op.WRITE, [data]))

    def up_write(self, data: bytes) -> None:
        if data:
            self.actions.append((Op.UP_WRITE, data))

    def up_pause(self, paused: bool) -> None:
        if paused is not self.up_paused:
            self.up_paused = paused
            self.actions.append((Op.UP_PAUSE, paused))

    def set_live(self, share_id: uuid.UUID | None) -> None:
        if share_id != self.live:
            self.live = share_id
            self.actions.append((Op.LIVE, share_id))

    def log(self, decision: Forward | Deny, request: http1.Request, status: int,
            x: Exchange | None, reason: str | None) -> None:  # fmt: skip
        if decision.share is not None:  # public-URL requests are not logged
            self.actions.append((Op.LOG, Logged(decision, request, status, x, reason)))
