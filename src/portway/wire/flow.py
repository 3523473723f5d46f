"""Window and budget arithmetic of the multiplexed data plane; no I/O, no clock of its own.

Used only by :class:`~portway.wire.mux.MuxSession`; kept apart so the rules can be read (and
tested) without the framing around them.

Receive side of one stream (:class:`ReceiveWindow`), all in bytes::

    size == remaining + held + unreturned

``size`` is the window this side advertises, ``remaining`` the credit the peer still has, ``held``
what arrived and the application has not yet reported as taken by its destination
(:meth:`ReceiveWindow.consume`), ``unreturned`` what was taken but not yet credited back in a
``WINDOW_UPDATE``. Credit goes back in batches (half a window, or sooner when the peer is about to
stall), and the window doubles when the application drains a whole window within
:data:`AUTOTUNE_RTTS` smoothed round trips, so a fast path gets a window worth its
bandwidth-delay product while a slow destination keeps the small one.

All streams of a session share a :class:`MemoryBudget` for the growth of their windows beyond
:data:`INITIAL_WINDOW`. What the peer can make this side hold, whatever the application does,
is therefore at most ``max_streams * INITIAL_WINDOW + budget``: every stream is sure of its
initial window (so a session can carry thousands of idle streams), and only auto-tuned growth,
which a few bulk streams ask for, competes for the budget.
"""

from __future__ import annotations

from typing import Final

INITIAL_WINDOW: Final = 256 * 1024
"""Receive window of every new stream, both directions; fixed, so it needs no negotiation."""
MAX_WINDOW: Final = 16 * 1024 * 1024
"""Auto-tuning never grows a stream's window beyond this."""
DEFAULT_BUDGET: Final = 64 * 1024 * 1024
"""Default cap on how far a session's receive windows may grow beyond their initial size."""
DEFAULT_RTT: Final = 0.05
"""Round-trip time assumed until a ``PING`` has been answered."""
AUTOTUNE_RTTS: Final = 4
"""A window is doubled when a whole window was consumed in less than this many round trips."""


class RttEstimator:
    """Smoothed round-trip time (RFC 6298 weights: 7/8 old, 1/8 new sample)."""

    __slots__ = ("smoothed",)

    def __init__(self) -> None:
        self.smoothed: float | None = None
        """None until the first sample."""

    @property
    def value(self) -> float:
        """The estimate to use now: the smoothed RTT, or :data:`DEFAULT_RTT` before a sample."""
        return DEFAULT_RTT if self.smoothed is None else self.smoothed

    def sample(self, rtt: float) -> None:
        """Feed one measured round trip (negative values, from a clock going back, count as 0)."""
        rtt = max(rtt, 0.0)
        self.smoothed = rtt if self.smoothed is None else 0.875 * self.smoothed + 0.125 * rtt


class MemoryBudget:
    """How far a session's receive windows grew beyond their initial size (``reserved``),
    against its ``limit``."""

    __slots__ = ("limit", "reserved")

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("a session budget cannot be negative")
        self.limit = limit
        self.reserved = 0

    def take(self, n: int) -> None:
        """Take ``n`` bytes; the caller stayed within :meth:`growth_room`."""
        self.reserved += n

    def release(self, n: int) -> None:
        """Give back ``n`` bytes (a grown window closed, or its stream was freed)."""
        self.reserved -= n
        assert self.reserved >= 0, "budget released more than it reserved"

    def growth_room(self) -> int:
        """How much windows may still grow by."""
        return max(0, self.limit - self.reserved)


class ReceiveWindow:
    """Receive-side accounting of one stream; the session calls it and sends what it says."""

    __slots__ = (
        "closed",
        "epoch_bytes",
        "epoch_start",
        "held",
        "remaining",
        "size",
        "unreturned",
    )

    def __init__(self, size: int = INITIAL_WINDOW) -> None:
        self.size = size
        self.remaining = size
        self.held = 0
        self.unreturned = 0
        self.closed = False
        """The peer finished sending (FIN): no more credit goes out and the window shrinks to
        what the application still holds."""
        self.epoch_start: float | None = None
        self.epoch_bytes = 0

    @property
    def reserved(self) -> int:
        """What this stream takes from the session budget now: its growth, while open."""
        return 0 if self.closed else self.size - INITIAL_WINDOW

    def receive(self, n: int, now: float) -> bool:
        """Account a ``DATA`` frame of ``n`` bytes; False when it exceeds the peer's credit.

        The first bytes after a quiet spell start the auto-tuning epoch: how fast a window
        drains is measured from when its first byte arrived.
        """
        if n > self.remaining:
            return False
        self.remaining -= n
        self.held += n
        if self.epoch_start is None:
            self.epoch_start = now
        return True

    def consume(self, n: int, now: float, rtt: float, budget: MemoryBudget) -> bool:
        """The application's destination took ``n`` bytes; True when credit should go out now.

        Batching: credit is returned once half the window is waiting, or as soon as the peer has
        no more credit left than what is waiting (it is about to stall). Auto-tuning happens
        here: a whole window consumed within ``AUTOTUNE_RTTS * rtt`` doubles the window (up to
        :data:`MAX_WINDOW`, as far as the budget allows) and the growth joins the pending credit.
        """
        if n > self.held:
            raise ValueError(f"consumed {n} bytes but only {self.held} were received")
        self.held -= n
        if self.closed:
            return False
        self.unreturned += n
        start = now if self.epoch_start is None else self.epoch_start
        self.epoch_bytes += n
        if self.epoch_bytes >= self.size:
            if now - start < AUTOTUNE_RTTS * rtt and self.size < MAX_WINDOW:
                grow = min(self.size, MAX_WINDOW - self.size, budget.growth_room())
                if grow > 0:
                    budget.take(grow)
                    self.size += grow
                    self.unreturned += grow
            self.epoch_start = now if self.held else None
            self.epoch_bytes = 0
        return self.unreturned >= self.size >> 1 or self.unreturned >= self.remaining

    def take_update(self) -> int:
        """The credit to put in a ``WINDOW_UPDATE`` now (0 if none); it counts as returned."""
        if self.closed:
            return 0
        delta = self.unreturned
        self.remaining += delta
        self.unreturned = 0
        return delta

    def finish(self, budget: MemoryBudget) -> None:
        """The peer sent FIN: the window can no longer fill, its growth goes back."""
        if not self.closed:
            budget.release(self.reserved)
            self.closed = True
            self.remaining = self.unreturned = 0


class TokenBucket:
    """At most ``rate`` events per second, with a burst of one second's worth."""

    __slots__ = ("_last", "_tokens", "rate")

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("a rate must be positive")
        self.rate = rate
        self._tokens = rate
        self._last: float | None = None

    def take(self, now: float) -> bool:
        """Spend one token if there is one; ``now`` is the caller's monotonic clock."""
        if self._last is not None and now > self._last:
            self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
