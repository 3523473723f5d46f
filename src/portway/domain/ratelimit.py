"""Exact per-share rate limits with no I/O: a sliding-window log.

The edge keeps one `SlidingWindow` per share and calls `hit(key, limit, now)` for every request
(and `portway join` guest sessions for every new connection). At most `limit` hits pass in any
`window`-second interval; the next is refused with the time until one slot frees up. Memory is
one float per passed hit in the window (a limit is at most 1000 per minute).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

WINDOW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: int
    """Whole seconds until the oldest counted hit leaves the window (a slot frees up)."""

    @property
    def retry_after(self) -> int:
        return max(1, self.reset_after)

    def headers(self) -> list[tuple[str, str]]:
        """The `X-RateLimit-*` headers every share response carries."""
        return [
            ("X-RateLimit-Limit", str(self.limit)),
            ("X-RateLimit-Remaining", str(self.remaining)),
            ("X-RateLimit-Reset", str(self.reset_after)),
        ]


class SlidingWindow:
    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self.window = window
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str, limit: int, now: float) -> RateDecision:
        """Count one request for `key` at `now` (seconds) if fewer than `limit` passed in the
        last `window` seconds; otherwise refuse it without counting it."""
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        allowed = len(hits) < limit
        if allowed:
            hits.append(now)
        reset = math.ceil(hits[0] + self.window - now) if hits else 0
        return RateDecision(allowed, limit, max(0, limit - len(hits)), max(0, reset))

    def forget(self, key: str) -> None:
        self._hits.pop(key, None)
