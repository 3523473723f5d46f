"""What every scenario shares: its settings, the numbers it returns, and `NotApplicable`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.paths import Endpoints
from bench.tools import Endpoint


@dataclass(frozen=True)
class Settings:
    """How long and how hard each scenario runs (``--quick`` and ``--smoke`` shrink them)."""

    bulk_seconds: float = 10
    http_seconds: float = 5
    udp_seconds: float = 5
    udp_rate_mbit: float = 100
    http_connections: int = 50
    idle_connections: int = 20_000  # up to the last checkpoint; capped by RLIMIT_NOFILE
    idle_seconds: float = 90  # opening stops after this long; what reached the origin counts
    redis_requests: int = 50_000
    pgbench_seconds: float = 10
    curve_connections: tuple[int, ...] = (1, 10, 100, 1000)
    idle_checkpoints: tuple[int, ...] = (1000, 5000, 10_000, 20_000)
    echo_idle_seconds: float = 3  # the fairness scenario's round trips without the bulk
    session_streams: int = 1000  # idle connections open while the agents' sessions are counted


# Every wrk scenario on every path, baselines included, first runs this long unmeasured: a
# Portway stack fresh from the idle-memory scenario grows its channel pool again, and the
# measured seconds should see each path in its steady state.
WARMUP_SECONDS = 1

Metrics = dict[str, float]
Scenario = Callable[[Endpoints, Settings], Metrics]


def need(endpoint: Endpoint | None, what: str) -> Endpoint:
    if endpoint is None:
        raise NotApplicable(f"this path does not carry {what}")
    return endpoint


class NotApplicable(Exception):
    """The path cannot run this scenario (ssh carries no UDP, the edge only HTTP)."""
