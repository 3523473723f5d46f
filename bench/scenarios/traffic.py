"""The scenarios that drive a client tool through the path: iperf3 (TCP bulk, UDP), wrk (new
connections, keep-alive, and the keep-alive curve by concurrency), redis-benchmark and
pgbench."""

from __future__ import annotations

from bench.paths import Endpoints
from bench.scenarios.base import WARMUP_SECONDS, Metrics, Scenario, Settings, need
from bench.tools import iperf3_tcp, iperf3_udp, pgbench, redis_benchmark, wrk


def tcp_bulk(endpoints: Endpoints, settings: Settings) -> Metrics:
    return iperf3_tcp(need(endpoints.iperf_tcp, "TCP"), settings.bulk_seconds)


def tcp_bulk_p8(endpoints: Endpoints, settings: Settings) -> Metrics:
    return iperf3_tcp(need(endpoints.iperf_tcp, "TCP"), settings.bulk_seconds, streams=8)


def tcp_bulk_reverse(endpoints: Endpoints, settings: Settings) -> Metrics:
    return iperf3_tcp(need(endpoints.iperf_tcp, "TCP"), settings.bulk_seconds, reverse=True)


def new_connections(endpoints: Endpoints, settings: Settings) -> Metrics:
    """New connections per second: one request per connection (``Connection: close``)."""
    return _wrk(endpoints, settings, close=True)


def http_keepalive(endpoints: Endpoints, settings: Settings) -> Metrics:
    return _wrk(endpoints, settings, close=False)


def _wrk(endpoints: Endpoints, settings: Settings, *, close: bool) -> Metrics:
    endpoint = need(endpoints.http, "HTTP")
    wrk(endpoint, WARMUP_SECONDS, settings.http_connections, close=close)
    return wrk(endpoint, settings.http_seconds, settings.http_connections, close=close)


def udp(endpoints: Endpoints, settings: Settings) -> Metrics:
    endpoint = need(endpoints.iperf_udp, "UDP")
    return iperf3_udp(endpoint, settings.udp_seconds, settings.udp_rate_mbit)


def redis_scenario(test: str, clients: int) -> Scenario:
    def scenario(endpoints: Endpoints, settings: Settings) -> Metrics:
        endpoint = need(endpoints.redis, "Redis")
        return redis_benchmark(endpoint, test, clients, settings.redis_requests)

    scenario.__doc__ = f"redis-benchmark -t {test} -c {clients}: requests/s, p50 and p99 (ms)."
    return scenario


def pgbench_scenario(clients: int) -> Scenario:
    def scenario(endpoints: Endpoints, settings: Settings) -> Metrics:
        endpoint = need(endpoints.postgres, "PostgreSQL")
        return pgbench(endpoint, clients, settings.pgbench_seconds, PGBENCH_USER)

    scenario.__doc__ = f"pgbench -S -c {clients}: select-only transactions/s, latency (ms)."
    return scenario


PGBENCH_USER = "portway"  # `throwaway_cluster`'s superuser, trusted on loopback


def keepalive_curve(endpoints: Endpoints, settings: Settings) -> list[Metrics]:
    """wrk keep-alive requests/s and latency at each of `settings.curve_connections`."""
    endpoint = need(endpoints.http, "HTTP")
    points = []
    for connections in settings.curve_connections:
        threads = min(2, connections)
        wrk(endpoint, WARMUP_SECONDS, connections, threads=threads)
        measured = wrk(endpoint, settings.http_seconds, connections, threads=threads)
        points.append({"x": float(connections), **measured})
    return points
