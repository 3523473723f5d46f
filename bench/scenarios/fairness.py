"""The fairness scenario: echo round trips on one connection, alone and then beside an iperf3
bulk transfer through the same path."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from bench.paths import Endpoints
from bench.procs import established_to
from bench.scenarios.base import Metrics, Settings, need
from bench.tools import iperf3_tcp

ECHO_BYTES = 64
ECHO_INTERVAL = 0.002  # seconds from the start of one round trip to the start of the next
BULK_RAMP = 0.5  # seconds the bulk has to set up and reach full speed before round trips count


def latency_summary(samples_ms: Sequence[float], prefix: str = "") -> Metrics:
    """p50, p99 (nearest rank) and max of round-trip times in ms, and how many there were."""
    if not samples_ms:
        raise ValueError("no round trips to summarise")
    ordered = sorted(samples_ms)

    def rank(pct: float) -> float:
        return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]

    return {
        f"{prefix}p50_ms": rank(50), f"{prefix}p99_ms": rank(99),
        f"{prefix}max_ms": ordered[-1], f"{prefix}round_trips": float(len(ordered)),
    }  # fmt: skip


def echo_round_trips(
    sock: socket.socket, until: Callable[[], bool], interval: float = ECHO_INTERVAL,
    size: int = ECHO_BYTES,
) -> list[float]:  # fmt: skip
    """Round trips of `size` bytes through an echo on `sock`, one at a time, one started every
    `interval` seconds (at once when the last took longer) until `until()`; each in ms."""
    payload = bytes(i % 256 for i in range(size))
    samples = []
    next_start = time.perf_counter()
    while not until():
        if (wait_s := next_start - time.perf_counter()) > 0:
            time.sleep(wait_s)
        started = time.perf_counter()
        sock.sendall(payload)
        echoed = b""
        while len(echoed) < size:
            chunk = sock.recv(size - len(echoed))
            if not chunk:
                raise ConnectionError("the echo connection closed")
            echoed += chunk
        samples.append((time.perf_counter() - started) * 1000)
        if echoed != payload:
            raise RuntimeError(f"the echo answered {echoed!r}")
        next_start = started + interval
    return samples


def _for(seconds: float) -> Callable[[], bool]:
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() >= deadline


def fairness(endpoints: Endpoints, settings: Settings) -> Metrics:
    """Echo round trips on one connection while an iperf3 bulk transfer runs on another.

    ``p50_ms``, ``p99_ms``, ``max_ms`` and ``round_trips`` are the round trips (`ECHO_BYTES`,
    one every `ECHO_INTERVAL` s) from `BULK_RAMP` s after the bulk starts until its
    `settings.bulk_seconds` are over; ``idle_*`` the same round trips on the same connection
    for `settings.echo_idle_seconds` before it; ``p99_x_idle`` their ratio; ``bulk_gbit_s``
    the bulk's goodput meanwhile. On Portway's paths ``same_agent_process`` is 1 when the
    exposing process that dialled the echo also dialled one of the bulk's connections.
    """
    bulk = need(endpoints.iperf_tcp, "TCP")
    echo = need(endpoints.echo, "the echo origin")
    with socket.create_connection((echo.host, echo.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        echo_round_trips(sock, _for(0.2))  # the stream reaches the origin; the code paths warm
        idle = echo_round_trips(sock, _for(settings.echo_idle_seconds))
        with ThreadPoolExecutor(max_workers=1) as pool:
            started = time.monotonic()
            running = pool.submit(iperf3_tcp, bulk, settings.bulk_seconds)
            time.sleep(min(BULK_RAMP, settings.bulk_seconds / 2))
            # iperf3 sends for `bulk_seconds` once set up: it still does at `end`.
            end = started + settings.bulk_seconds
            loaded = echo_round_trips(sock, lambda: running.done() or time.monotonic() >= end)
            shared = _same_agent_process(endpoints) if not running.done() else None
            moved = running.result()
    result = latency_summary(loaded) | latency_summary(idle, prefix="idle_")
    result["p99_x_idle"] = result["p99_ms"] / result["idle_p99_ms"]
    result["bulk_gbit_s"] = moved["gbit_s"]
    if shared is not None:
        result["same_agent_process"] = shared
    return result


def _same_agent_process(endpoints: Endpoints) -> float | None:
    """1.0 when an exposing process holding a connection to the echo origin also holds one to
    iperf3's (the bulk's control or data connection), 0.0 when none does; None off Portway."""
    agents = endpoints.pids.get("agent", ())
    echo_port = endpoints.origin_ports.get("echo")
    iperf_port = endpoints.origin_ports.get("iperf_tcp")
    if not agents or not echo_port or not iperf_port:
        return None
    echoing = [pid for pid in agents if established_to(pid, echo_port)]
    return float(any(established_to(pid, iperf_port) for pid in echoing))
