from __future__ import annotations

import random

from portway.domain.backoff import Backoff


def test_retries_quickly_first_then_grows_to_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(rng=random.Random(7))
    delays = [backoff.next() for _ in range(40)]
    assert all(0.125 <= d <= 1.0 for d in delays[:20])  # a restarted hub is found at once
    assert sum(delays[:20]) < 20
    assert all(0.125 <= d <= 10.0 for d in delays[20:])
    assert max(delays[20:]) > 5  # a longer outage reaches the capped region
    assert len(set(delays)) == len(delays)  # jittered, not lockstep
    backoff.reset()
    assert backoff.next() <= 0.25
