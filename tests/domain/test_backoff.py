from __future__ import annotations

import random

from portway.domain.backoff import Backoff


def test_grows_to_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(rng=random.Random(7))
    delays = [backoff.next() for _ in range(20)]
    assert all(0.125 <= d <= 10.0 for d in delays)
    assert max(delays[10:]) > 5  # reached the capped region
    assert len(set(delays)) == len(delays)  # jittered, not lockstep
    backoff.reset()
    assert backoff.next() <= 0.25
