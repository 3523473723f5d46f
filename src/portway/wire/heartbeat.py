"""Sans-IO heartbeat bookkeeping for one control session (either side).

The session loop owns the clock: it calls :meth:`Heartbeat.seen` for every frame received, sends
the :class:`~portway.wire.control_messages.Ping` that :meth:`Heartbeat.poll` returns, hands every
received ``Pong`` to :meth:`Heartbeat.pong`, and drops the session (``goodbye`` with
``heartbeat_timeout``) once :meth:`Heartbeat.expired` is true. Pings go out every interval, and
any received frame proves the peer alive, so a pong queued behind a large frame is no false alarm.
"""

from __future__ import annotations

from portway.wire.control_messages import Ping, Pong

MAX_PING_ID = 2**63 - 1


class Heartbeat:
    """Ping scheduling and dead-peer detection; pure arithmetic on the ``now`` values given."""

    def __init__(self, *, interval: float, timeout: float, now: float) -> None:
        if not 0 < interval < timeout:
            raise ValueError("the heartbeat interval must be positive and below the timeout")
        self.interval = interval
        self.timeout = timeout
        self.last_seen = now
        self.rtt: float | None = None
        """Round-trip time of the last answered ping, in seconds."""
        self._next_ping = now + interval
        self._next_id = 1
        self._outstanding: dict[int, float] = {}  # ping id -> time sent

    def seen(self, now: float) -> None:
        """Record that a frame arrived from the peer."""
        self.last_seen = max(self.last_seen, now)

    def poll(self, now: float) -> Ping | None:
        """A ping to send now, or None. Call at :meth:`next_wakeup` (or whenever convenient)."""
        if now < self._next_ping:
            return None
        ping_id = self._next_id
        self._next_id = ping_id % MAX_PING_ID + 1
        self._outstanding[ping_id] = now
        # Unanswered pings older than the timeout are moot: expiry decides.
        for stale in [i for i, t in self._outstanding.items() if t < now - self.timeout]:
            del self._outstanding[stale]
        self._next_ping = now + self.interval
        return Ping(ping_id)

    def pong(self, pong: Pong, now: float) -> float | None:
        """Match a pong to its ping; return the round-trip time, or None for an unknown id."""
        self.seen(now)
        sent = self._outstanding.pop(pong.id, None)
        if sent is None:
            return None
        self.rtt = now - sent
        return self.rtt

    def expired(self, now: float) -> bool:
        """True once the peer has been silent for longer than the timeout."""
        return now - self.last_seen > self.timeout

    def next_wakeup(self) -> float:
        """The earliest time at which :meth:`poll` or :meth:`expired` may change its answer."""
        return min(self._next_ping, self.last_seen + self.timeout)


def answer(ping: Ping) -> Pong:
    """The pong for a received ping; the session loop writes it at once."""
    return Pong(ping.id)
