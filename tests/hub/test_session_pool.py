"""The idle channel pool of one agent session: how far it grows, and when it shrinks again."""

from __future__ import annotations

import time
import uuid
from typing import cast

from portway.hub.dataplane.sessions import IDLE_TTL, KEEP_IDLE, MAX_IDLE, AgentSession
from portway.net.framed import FramedConnection


class Channel:
    """Stands in for a parked data channel: the pool only sets `on_lost` and calls `close()`."""

    def __init__(self) -> None:
        self.on_lost: object = None
        self.closed = False

    def close(self) -> None:
        self.closed = True


def session(pool_size: int = 4) -> AgentSession:
    return AgentSession(
        agent_id=uuid.uuid4(), workspace_id=uuid.uuid4(), agent_name="a",
        control=cast(FramedConnection, Channel()), features=frozenset(), pool_size=pool_size,
    )  # fmt: skip


def park(pool: AgentSession, count: int, *, reused: bool) -> list[Channel]:
    channels = [Channel() for _ in range(count)]
    for channel in channels:
        pool.add_channel(cast(FramedConnection, channel), reused=reused)
    return channels


def test_channels_back_from_a_burst_stay_until_they_sit_unused() -> None:
    pool = session()
    # 50 clients connecting over and over: all 50 channels come back and are kept.
    returned = park(pool, 50, reused=True)
    assert pool.idle_channels == 50 and not any(c.closed for c in returned)
    now = time.monotonic()
    assert pool.trim_idle(now) == 0  # just parked: nothing is trimmed
    assert pool.trim_idle(now + IDLE_TTL + 1) == 50 - KEEP_IDLE
    assert pool.idle_channels == KEEP_IDLE
    # The longest unused went first; the pool still hands out the newest.
    assert all(c.closed for c in returned[: 50 - KEEP_IDLE])
    assert not any(c.closed for c in returned[50 - KEEP_IDLE :])


def test_trimming_stops_at_the_agents_pool_size_longest_unused_first() -> None:
    pool = session(pool_size=40)
    untouched = park(pool, 10, reused=False)
    returned = park(pool, 35, reused=True)
    assert pool.trim_idle(time.monotonic() + IDLE_TTL + 1) == 5
    assert pool.idle_channels == 40
    assert [c.closed for c in untouched] == [True] * 5 + [False] * 5
    assert not any(c.closed for c in returned)


def test_the_pool_stops_growing_at_max_idle() -> None:
    pool = session()
    extra = park(pool, MAX_IDLE + 3, reused=True)
    assert pool.idle_channels == MAX_IDLE
    assert [c.closed for c in extra[-3:]] == [True] * 3
