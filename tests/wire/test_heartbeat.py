from __future__ import annotations

import pytest

from portway.wire.control_messages import Ping, Pong
from portway.wire.heartbeat import Heartbeat, answer


def test_pings_fill_silence_and_pongs_give_rtt() -> None:
    hb = Heartbeat(interval=5, timeout=15, now=100.0)
    assert hb.poll(104.9) is None
    assert hb.next_wakeup() == 105.0
    ping = hb.poll(105.0)
    assert ping == Ping(1)
    assert hb.poll(105.1) is None
    assert hb.pong(answer(ping), 105.25) == pytest.approx(0.25)
    assert hb.rtt == pytest.approx(0.25)
    assert hb.poll(110.0) == Ping(2)


def test_unknown_pong_is_ignored_but_proves_liveness() -> None:
    hb = Heartbeat(interval=5, timeout=15, now=0.0)
    assert hb.pong(Pong(99), 10.0) is None
    assert hb.last_seen == 10.0


def test_silence_longer_than_timeout_expires_the_session() -> None:
    hb = Heartbeat(interval=5, timeout=15, now=0.0)
    assert hb.poll(5.0) == Ping(1)
    assert hb.poll(10.0) == Ping(2)
    assert not hb.expired(15.0)
    assert hb.expired(15.01)
    assert hb.next_wakeup() == 15.0


def test_any_frame_keeps_the_session_alive() -> None:
    hb = Heartbeat(interval=5, timeout=15, now=0.0)
    hb.seen(14.0)
    assert not hb.expired(28.0)
    hb.seen(3.0)  # a late timestamp never moves liveness backwards
    assert hb.last_seen == 14.0


def test_stale_outstanding_pings_are_forgotten() -> None:
    hb = Heartbeat(interval=1, timeout=3, now=0.0)
    first = hb.poll(1.0)
    assert first is not None
    for t in range(2, 10):
        hb.poll(float(t))
    assert hb.pong(answer(first), 10.0) is None  # answered far too late: not an RTT sample


def test_interval_must_be_below_timeout() -> None:
    with pytest.raises(ValueError, match="below the timeout"):
        Heartbeat(interval=15, timeout=15, now=0.0)
