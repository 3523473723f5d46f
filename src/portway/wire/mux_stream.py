"""One stream's record inside a :class:`~portway.wire.mux.MuxSession`: both directions' state.

A plain slotted record, no behaviour: the session's halves (:mod:`portway.wire.mux_sending`,
:mod:`portway.wire.mux_receiving`) and its bookkeeping (:mod:`portway.wire.mux_state`) read and
write its fields directly, on the hot path, so it stays a bare object with ``__slots__``.
"""

from __future__ import annotations

import collections

from portway.wire.flow import INITIAL_WINDOW, ReceiveWindow
from portway.wire.frames import Bytes

__all__ = ["StreamState"]


class StreamState:
    """One stream of a session (either side opened it), from its SYN until freed (``dead``)."""

    __slots__ = (
        "ack_pending",
        "acked",
        "buffered",
        "dead",
        "fin_queued",
        "fin_sent",
        "head_off",
        "id",
        "in_ready",
        "local",
        "over_high",
        "queue",
        "remote_fin",
        "rx",
        "send_window",
        "syn_pending",
    )

    def __init__(self, stream_id: int, *, local: bool) -> None:
        self.id = stream_id
        self.local = local
        self.syn_pending = local  # ours, SYN not framed yet
        self.acked = not local  # ours: the peer has ACKed
        self.ack_pending = False  # theirs: ACK not framed yet
        self.send_window = INITIAL_WINDOW
        self.queue: collections.deque[Bytes] = collections.deque()
        self.head_off = 0  # bytes of queue[0] already framed
        self.buffered = 0  # queued, not yet framed
        self.fin_queued = False
        self.fin_sent = False
        self.remote_fin = False
        self.in_ready = False
        self.over_high = False
        self.dead = False
        self.rx = ReceiveWindow()
