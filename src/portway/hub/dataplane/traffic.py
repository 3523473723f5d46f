"""Live proxied connections per tunnel and the counters the store gets in batches.

The per-chunk path only bumps ints inside the splices; `drain()` turns them into deltas every
few seconds, so the database sees one UPDATE per busy tunnel per batch, never one per chunk.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from portway.wire.codes import Reason
from portway.wire.control_messages import Counter

_NOTHING = Counter("", 0, 0, 0, 0)


class Relay(Protocol):
    """A proxied connection as the counters see it: a splice, or an HTTP edge connection."""

    @property
    def bytes_a_to_b(self) -> int: ...  # towards the target

    @property
    def bytes_b_to_a(self) -> int: ...  # from the target

    def reset(self, reason: Reason = ...) -> None: ...


@dataclass
class Delta:
    opened: int = 0
    closed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    last_connection_at: datetime | None = None
    datagrams_in: int = 0
    datagrams_out: int = 0
    datagrams_dropped: int = 0

    def __bool__(self) -> bool:
        return bool(
            self.opened or self.closed or self.bytes_in or self.bytes_out or self.datagrams_in
            or self.datagrams_out or self.datagrams_dropped
        )  # fmt: skip

    def add(self, tracked: _Tracked) -> None:
        bytes_in, bytes_out, datagrams_in, datagrams_out, dropped = tracked.unreported()
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        self.datagrams_in += datagrams_in
        self.datagrams_out += datagrams_out
        self.datagrams_dropped += dropped


@dataclass(eq=False)
class _Tracked:
    splice: Relay
    reported_in: int = 0
    reported_out: int = 0
    reported_datagrams: tuple[int, int, int] = (0, 0, 0)

    def unreported(self) -> tuple[int, int, int, int, int]:
        """Bytes in, bytes out, datagrams in, out and dropped since the previous call."""
        # "a" faces the visitor (bytes towards the target), "b" the exposing agent.
        now_in, now_out = self.splice.bytes_a_to_b, self.splice.bytes_b_to_a
        relay = self.splice
        datagrams = (
            int(getattr(relay, "datagrams_in", 0)),
            int(getattr(relay, "datagrams_out", 0)),
            int(getattr(relay, "datagrams_dropped", 0)),
        )  # UDP sessions (portway.net.udp.UdpSession) count datagrams too
        before = self.reported_datagrams
        delta = (
            now_in - self.reported_in, now_out - self.reported_out, datagrams[0] - before[0],
            datagrams[1] - before[1], datagrams[2] - before[2],
        )  # fmt: skip
        self.reported_in, self.reported_out = now_in, now_out
        self.reported_datagrams = datagrams
        return delta


@dataclass
class Traffic:
    live: dict[uuid.UUID, dict[Relay, _Tracked]] = field(default_factory=dict)
    pending: dict[uuid.UUID, Delta] = field(default_factory=dict)
    reports: dict[str, dict[uuid.UUID, Counter]] = field(default_factory=dict)
    """Session id -> tunnel -> the last `counters` an agent sent for connections the hub does
    not carry (the direct path, protocol.md §20)."""

    def reported(self, session: str, tunnel_id: uuid.UUID, counter: Counter, now: datetime) -> None:
        """An agent's cumulative counters (of this session) for `tunnel_id`: what changed since
        its previous ones joins the next drain, as the hub's own connections do."""
        last = self.reports.setdefault(session, {}).get(tunnel_id, _NOTHING)
        self.reports[session][tunnel_id] = counter
        delta = self.pending.setdefault(tunnel_id, Delta())
        opened = counter.total - last.total
        delta.opened += opened
        delta.closed += (counter.total - counter.active) - (last.total - last.active)
        delta.bytes_in += counter.bytes_in - last.bytes_in
        delta.bytes_out += counter.bytes_out - last.bytes_out
        if opened:
            delta.last_connection_at = now

    def session_ended(self, session: str) -> None:
        """The connections a session's agent counted as open are not counted any more (a new
        session counts those still open as opened in it)."""
        for tunnel_id, last in self.reports.pop(session, {}).items():
            if last.active:
                self.pending.setdefault(tunnel_id, Delta()).closed += last.active

    def opened(self, tunnel_id: uuid.UUID, splice: Relay, now: datetime) -> None:
        self.live.setdefault(tunnel_id, {})[splice] = _Tracked(splice)
        delta = self.pending.setdefault(tunnel_id, Delta())
        delta.opened += 1
        delta.last_connection_at = now

    def closed(self, tunnel_id: uuid.UUID, splice: Relay) -> None:
        tracked = self.live.get(tunnel_id, {}).pop(splice, None)
        if tracked is None:
            return
        delta = self.pending.setdefault(tunnel_id, Delta())
        delta.closed += 1
        delta.add(tracked)
        if not self.live[tunnel_id]:
            del self.live[tunnel_id]

    def dropped(self, tunnel_id: uuid.UUID, count: int = 1) -> None:
        """Datagrams dropped outside any session (paused tunnel, refused sender)."""
        self.pending.setdefault(tunnel_id, Delta()).datagrams_dropped += count

    def active(self, tunnel_id: uuid.UUID) -> int:
        return len(self.live.get(tunnel_id, ()))

    def reset(self, tunnel_id: uuid.UUID, reason: Reason) -> int:
        """Abort every live connection of a tunnel (paused, deleted); returns how many."""
        splices = list(self.live.get(tunnel_id, {}))
        for splice in splices:
            splice.reset(reason)
        return len(splices)

    def drain(self) -> dict[uuid.UUID, Delta]:
        """Deltas since the previous drain, live connections' bytes included."""
        for tunnel_id, tracked in self.live.items():
            delta = self.pending.setdefault(tunnel_id, Delta())
            for entry in tracked.values():
                delta.add(entry)
        out = {tid: d for tid, d in self.pending.items() if d}
        self.pending = {}
        return out
