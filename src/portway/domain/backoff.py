"""Reconnect delays: exponential with full jitter, capped, reset after a healthy session."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """`next()` gives the wait before the next attempt; `reset()` after a successful connect.

    Full jitter (a uniform draw below the exponential ceiling) keeps a fleet of agents that
    lost the same hub from reconnecting in lockstep.
    """

    base: float = 0.25
    cap: float = 10.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def ceiling(self) -> float:
        return float(min(self.cap, self.base * self.factor**self.attempt))

    def next(self) -> float:
        delay = self.rng.uniform(self.base / 2, max(self.base, self.ceiling()))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
