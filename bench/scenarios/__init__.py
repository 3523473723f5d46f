"""The scenarios: each takes a path's `Endpoints` and returns a dict of numbers (`Metrics`).

The families are the modules of this package (`traffic`, `idle`, `fairness`, `restart`; what
they share is in `base`); here is what `python -m bench` runs by name: every scenario with its
label, and the curves with how they are drawn. The hub restart (`restart.hub_restart`) takes
the whole Portway stack, not a path, and runs apart."""

from __future__ import annotations

from collections.abc import Callable

from bench.paths import Endpoints
from bench.scenarios import fairness, idle, traffic
from bench.scenarios.base import Metrics, Scenario, Settings

SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "tcp_bulk": ("TCP bulk, 1 stream (Gbit/s)", traffic.tcp_bulk),
    "tcp_bulk_p8": ("TCP bulk, -P 8 (Gbit/s)", traffic.tcp_bulk_p8),
    "tcp_bulk_reverse": ("TCP bulk, -R (Gbit/s)", traffic.tcp_bulk_reverse),
    "new_connections": ("new connections/s (wrk, Connection: close)", traffic.new_connections),
    "http_keepalive": ("HTTP keep-alive req/s (wrk -c 50)", traffic.http_keepalive),
    "udp": ("UDP delivered (Mbit/s)", traffic.udp),
    "redis_get_c1": ("redis-benchmark GET -c 1 (req/s)", traffic.redis_scenario("get", 1)),
    "redis_set_c1": ("redis-benchmark SET -c 1 (req/s)", traffic.redis_scenario("set", 1)),
    "redis_get_c50": ("redis-benchmark GET -c 50 (req/s)", traffic.redis_scenario("get", 50)),
    "redis_set_c50": ("redis-benchmark SET -c 50 (req/s)", traffic.redis_scenario("set", 50)),
    "pgbench_c1": ("pgbench select-only -c 1 (tps)", traffic.pgbench_scenario(1)),
    "pgbench_c16": ("pgbench select-only -c 16 (tps)", traffic.pgbench_scenario(16)),
    "idle_memory": ("memory per idle connection (KiB)", idle.idle_memory),
    "fairness": (
        "echo round trip p99 while another stream moves bulk data (ms)",
        fairness.fairness,
    ),
    "session_count": ("agent connections to the hub at 1,000 streams", idle.session_count),
}

Curve = Callable[[Endpoints, Settings], list[Metrics]]
# name: (title, x axis, {metric drawn: unit}, the function); `hub_rss_by_idle` comes from
# idle_memory's checkpoints.
CURVES: dict[str, tuple[str, str, dict[str, str], Curve]] = {
    "keepalive_by_connections": (
        "HTTP keep-alive by concurrent connections (wrk)", "concurrent connections",
        {"rps": "req/s", "p99_ms": "ms"}, traffic.keepalive_curve,
    ),
}  # fmt: skip
IDLE_CURVE = "hub_rss_by_idle"
IDLE_ROLES = ("hub", "agent", "front", "back")
CURVES_META: dict[str, dict[str, object]] = {
    **{name: {"title": title, "x": x, "metrics": list(units), "units": units}
       for name, (title, x, units, _fn) in CURVES.items()},
    IDLE_CURVE: {"title": "RSS by idle proxied connections", "x": "idle connections",
                 # The relay pairs' front stands in the hub's place, their back in the agent's.
                 "metrics": [f"{role}_rss_mib" for role in IDLE_ROLES],
                 "units": {f"{role}_rss_mib": "MiB" for role in IDLE_ROLES}},
}  # fmt: skip
