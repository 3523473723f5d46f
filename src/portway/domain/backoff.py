"""Reconnect delays: exponential with full jitter, capped, reset after a healthy session."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """`next()` gives the wait before the next attempt; `reset()` after a successful connect.

    Full jitter (a uniform draw below the ceiling) keeps a fleet of agents that lost the same
    hub from reconnecting in lockstep. The first `quick_attempts` stay under `quick_cap`: a hub
    that is restarted (an upgrade, a crash) is back within seconds, and its agents should be
    too; only a longer outage backs off towards `cap`.
    """

    base: float = 0.25
    cap: float = 10.0
    factor: float = 2.0
    quick_attempts: int = 20
    quick_cap: float = 1.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def ceiling(self) -> float:
        cap = self.quick_cap if self.attempt < self.quick_attempts else self.cap
        return float(min(cap, self.base * self.factor ** min(self.attempt, 32)))

    def next(self) -> float:
        delay = self.rng.uniform(self.base / 2, max(self.base, self.ceiling()))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
