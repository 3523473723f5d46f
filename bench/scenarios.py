"""The scenarios: each takes a path's `Endpoints` and returns a dict of numbers."""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial

from bench.paths import Endpoints, PortwayStack
from bench.procs import established_to, rss_kib, wait_for, wait_quiet
from bench.tools import Endpoint, iperf3_tcp, iperf3_udp, pgbench, redis_benchmark, wrk


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


def _need(endpoint: Endpoint | None, what: str) -> Endpoint:
    if endpoint is None:
        raise NotApplicable(f"this path does not carry {what}")
    return endpoint


class NotApplicable(Exception):
    """The path cannot run this scenario (ssh carries no UDP, the edge only HTTP)."""


def tcp_bulk(endpoints: Endpoints, settings: Settings) -> Metrics:
    return iperf3_tcp(_need(endpoints.iperf_tcp, "TCP"), settings.bulk_seconds)


def tcp_bulk_p8(endpoints: Endpoints, settings: Settings) -> Metrics:
    return iperf3_tcp(_need(endpoints.iperf_tcp, "TCP"), settings.bulk_seconds, streams=8)


def tcp_bulk_reverse(endpoints: Endpoints, settings: Settings) -> Metrics:
    return iperf3_tcp(_need(endpoints.iperf_tcp, "TCP"), settings.bulk_seconds, reverse=True)


def new_connections(endpoints: Endpoints, settings: Settings) -> Metrics:
    """New connections per second: one request per connection (``Connection: close``)."""
    return _wrk(endpoints, settings, close=True)


def http_keepalive(endpoints: Endpoints, settings: Settings) -> Metrics:
    return _wrk(endpoints, settings, close=False)


def _wrk(endpoints: Endpoints, settings: Settings, *, close: bool) -> Metrics:
    endpoint = _need(endpoints.http, "HTTP")
    wrk(endpoint, WARMUP_SECONDS, settings.http_connections, close=close)
    return wrk(endpoint, settings.http_seconds, settings.http_connections, close=close)


def udp(endpoints: Endpoints, settings: Settings) -> Metrics:
    endpoint = _need(endpoints.iperf_udp, "UDP")
    return iperf3_udp(endpoint, settings.udp_seconds, settings.udp_rate_mbit)


def _redis(test: str, clients: int) -> Scenario:
    def scenario(endpoints: Endpoints, settings: Settings) -> Metrics:
        endpoint = _need(endpoints.redis, "Redis")
        return redis_benchmark(endpoint, test, clients, settings.redis_requests)

    scenario.__doc__ = f"redis-benchmark -t {test} -c {clients}: requests/s, p50 and p99 (ms)."
    return scenario


def _pgbench(clients: int) -> Scenario:
    def scenario(endpoints: Endpoints, settings: Settings) -> Metrics:
        endpoint = _need(endpoints.postgres, "PostgreSQL")
        return pgbench(endpoint, clients, settings.pgbench_seconds, PGBENCH_USER)

    scenario.__doc__ = f"pgbench -S -c {clients}: select-only transactions/s, latency (ms)."
    return scenario


PGBENCH_USER = "portway"  # `throwaway_cluster`'s superuser, trusted on loopback


def origin_open_connections(origin_port: int) -> int:
    """How many connections the HTTP origin holds right now (not counting this one)."""
    with socket.create_connection(("127.0.0.1", origin_port), timeout=5) as sock:
        sock.sendall(b"GET /_stats HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return int(data.split(b"\r\n\r\n", 1)[1]) - 1


def _wait_origin_at_most(origin_port: int, connections: int, timeout: float, what: str) -> None:
    """Wait (up to `timeout`, then go on) until the HTTP origin holds at most `connections`."""
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: origin_open_connections(origin_port) <= connections, timeout=timeout,
                 what=what, step=0.2)  # fmt: skip


Checkpoint = Callable[[int, dict[str, float]], None]


def idle_memory(
    endpoints: Endpoints, settings: Settings, on_checkpoint: Checkpoint | None = None
) -> Metrics:
    """RSS growth of the hub and agents per idle proxied connection.

    Opens connections in batches of 250 and waits for each batch to reach the origin, up to
    `settings.idle_connections` or until `settings.idle_seconds` have passed (then the
    connections that did reach the origin are the ones counted). Each time the connections
    that reached the origin pass one of `settings.idle_checkpoints`, and once at the end,
    `on_checkpoint(connections, {role: RSS in MiB})` is called: the RSS-by-idle curve.
    """
    endpoint = _need(endpoints.http, "TCP")
    if not endpoints.pids:
        raise NotApplicable("no Portway process to measure")
    origin = endpoints.http_origin_port
    # Connections of the previous scenario may still be closing: start from a quiet origin.
    _wait_origin_at_most(origin, 0, timeout=30, what="the origin to be idle")
    baseline = origin_open_connections(origin)
    time.sleep(0.5)
    before = _rss_kib(endpoints)
    socks: list[socket.socket] = []
    started = time.monotonic()
    checkpoints = [n for n in settings.idle_checkpoints if n <= settings.idle_connections]

    def sample(connections: int, rss: dict[str, float] | None = None) -> None:
        if on_checkpoint is not None:
            rss = rss or _rss_kib(endpoints)
            on_checkpoint(connections, {role: kib / 1024 for role, kib in rss.items()})

    def arrived() -> int:
        reached = origin_open_connections(origin) - baseline
        if checkpoints and reached >= checkpoints[0]:
            sample(reached)
            while checkpoints and reached >= checkpoints[0]:
                checkpoints.pop(0)
        return reached

    try:
        stalled = _open_idle(
            endpoint, socks, settings.idle_connections, settings.idle_seconds, arrived
        )
        open_seconds = time.monotonic() - started
        time.sleep(1.0)  # let buffers settle
        reached = origin_open_connections(origin) - baseline
        after = _rss_kib(endpoints)
        sample(reached, after)
    finally:
        for sock in socks:
            sock.close()
    if reached <= 0:
        raise RuntimeError(f"none of {len(socks)} idle connections reached the origin")
    _wait_origin_at_most(origin, baseline, timeout=60, what="idle connections to close")
    result: Metrics = {
        "connections": float(reached),
        "asked": float(settings.idle_connections),
        "open_s": open_seconds,
        "opened_per_s": reached / open_seconds if open_seconds else 0.0,
        "stalled": float(stalled),
    }
    for role in endpoints.pids:
        result[f"{role}_kib_per_conn"] = (after[role] - before[role]) / reached
        result[f"{role}_rss_before_mib"] = before[role] / 1024
        result[f"{role}_rss_after_mib"] = after[role] / 1024
    return result


def _open_idle(
    endpoint: Endpoint, socks: list[socket.socket], count: int, seconds: float,
    arrived: Callable[[], int],
) -> bool:  # fmt: skip
    """Open idle connections into `socks` in batches of 250, each batch once the previous one
    has `arrived()` at the origin; True when it stalled (nothing new arrived for 5 s, or
    `seconds` passed) before `count`."""
    deadline = time.monotonic() + seconds
    reached = 0
    while len(socks) < count:
        for _ in range(min(250, count - len(socks))):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect((endpoint.host, endpoint.port))
            socks.append(sock)
        progress = time.monotonic()
        while reached < len(socks):
            now = arrived()
            if now > reached:
                reached, progress = now, time.monotonic()
            # A connection refused or reset on the way never arrives: stop opening when
            # nothing new reaches the origin for 5 s (or at the time limit).
            if time.monotonic() - progress > 5 or time.monotonic() > deadline:
                return True
            time.sleep(0.05)
    return False


def _rss_kib(endpoints: Endpoints) -> dict[str, float]:
    """RSS of each role's processes, summed, in KiB."""
    return {role: float(sum(map(rss_kib, pids))) for role, pids in endpoints.pids.items()}


def session_count(endpoints: Endpoints, settings: Settings) -> Metrics:
    """The exposing agents' TCP connections to the hub's agent port, before and while
    `settings.session_streams` idle connections are open through the path (each one a stream
    on one of those connections).

    Each `expose` process is an agent with its own sessions (``--sessions``, default 2), so the
    figures are per process: the most (and, while the streams are open, the fewest) any one
    holds, counted from /proc (`established_to`). ``busiest_agent_streams`` is the most
    connections to the origin one of them holds: the streams it carries.
    """
    endpoint = _need(endpoints.http, "TCP")
    agents = endpoints.pids.get("agent", ())
    if not agents or not endpoints.agent_port:
        raise NotApplicable("no agent sessions to count on this path")
    origin = endpoints.http_origin_port
    _wait_origin_at_most(origin, 0, timeout=30, what="the origin to be idle")
    baseline = origin_open_connections(origin)

    def links() -> list[int]:
        return [established_to(pid, endpoints.agent_port) for pid in agents]

    before = links()
    socks: list[socket.socket] = []
    try:
        stalled = _open_idle(
            endpoint, socks, settings.session_streams, settings.idle_seconds,
            lambda: origin_open_connections(origin) - baseline,
        )  # fmt: skip
        reached = origin_open_connections(origin) - baseline
        during = links()
        streams = [established_to(pid, origin) for pid in agents]
    finally:
        for sock in socks:
            sock.close()
    _wait_origin_at_most(origin, baseline, timeout=60, what="the streams to close")
    with contextlib.suppress(TimeoutError):  # the next scenario must not pay for the closing
        wait_quiet({pid for pids in endpoints.pids.values() for pid in pids}, timeout=30)
    if reached <= 0:
        raise RuntimeError(f"none of {len(socks)} connections reached the origin")
    return {
        "streams": float(reached),
        "asked": float(settings.session_streams),
        "stalled": float(stalled),
        "agent_processes": float(len(agents)),
        "agent_connections_before": float(max(before)),
        "agent_connections_with_streams": float(max(during)),
        "agent_connections_min_with_streams": float(min(during)),
        "busiest_agent_streams": float(max(streams)),
    }


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
    bulk = _need(endpoints.iperf_tcp, "TCP")
    echo = _need(endpoints.echo, "the echo origin")
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


def keepalive_curve(endpoints: Endpoints, settings: Settings) -> list[Metrics]:
    """wrk keep-alive requests/s and latency at each of `settings.curve_connections`."""
    endpoint = _need(endpoints.http, "HTTP")
    points = []
    for connections in settings.curve_connections:
        threads = min(2, connections)
        wrk(endpoint, WARMUP_SECONDS, connections, threads=threads)
        measured = wrk(endpoint, settings.http_seconds, connections, threads=threads)
        points.append({"x": float(connections), **measured})
    return points


def _http_ok(endpoint: Endpoint, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _seconds_until(
    probe: Callable[[], bool],
    started: float,
    deadline: float,
    stop: threading.Event,
    step: float = 0.1,
) -> float | None:
    """Seconds from `started` until `probe` first succeeds (None: not before `deadline`, or
    `stop` was set).

    A new attempt starts every `step` seconds while earlier ones may still be waiting, so one
    attempt stuck until its timeout (a listener that accepts before it can serve) does not
    hide a quick success right after it.
    """

    def attempt() -> float | None:
        return time.monotonic() if probe() else None

    in_flight = 5
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        pending: set[Future[float | None]] = set()
        next_try = time.monotonic()
        while time.monotonic() < deadline and not stop.is_set():
            if time.monotonic() >= next_try and len(pending) < in_flight:
                pending.add(pool.submit(attempt))
                next_try = time.monotonic() + step
            wait_s = max(0.0, next_try - time.monotonic())
            if not pending:
                time.sleep(wait_s)
                continue
            done, pending = wait(pending, timeout=wait_s, return_when=FIRST_COMPLETED)
            served = [t for t in (f.result() for f in done) if t is not None]
            if served:
                for future in pending:
                    future.cancel()
                return min(served) - started
    return None


def hub_restart(stack: PortwayStack) -> Metrics:
    """SIGKILL the hub, start it again on the same store and ports, time until paths serve.

    The public and reach endpoints are probed from the moment the new process is spawned:
    serving tunnels does not wait for the REST API, so ``hub_healthy_s`` (its ``/healthz``) is
    measured alongside, in parallel, and is not part of ``serving_s``.
    """
    endpoints = {"public": stack.public().http}
    if "reach" in stack.paths:
        endpoints["reach"] = stack.reach().http
    probes: dict[str, Callable[[], bool]] = {"hub_healthy_s": partial(stack.hub.healthy, 0.5)}
    for name, endpoint in endpoints.items():
        assert endpoint is not None and _http_ok(endpoint), f"{name} must serve before"
        probes[f"{name}_serving_s"] = partial(_http_ok, endpoint, 0.5)
    stack.hub.kill()
    started = time.monotonic()
    stack.hub.spawn()
    deadline = started + 60
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        futures = {
            key: pool.submit(_seconds_until, probe, started, deadline, stop)
            for key, probe in probes.items()
        }
        try:
            timings = {key: future.result() for key, future in futures.items()}
        finally:
            stop.set()  # the hub exited (healthy() raised): end the other probes too
    result: Metrics = {key: value for key, value in timings.items() if value is not None}
    # The same state as after `start()`: the API answers, so later scenarios can use it.
    stack.hub.wait_healthy(timeout=max(1.0, deadline - time.monotonic()))
    if len(result) < len(probes):
        raise TimeoutError(f"not serving 60 s after the hub restart ({result})")
    result["serving_s"] = max(v for k, v in result.items() if k.endswith("_serving_s"))
    return result


SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "tcp_bulk": ("TCP bulk, 1 stream (Gbit/s)", tcp_bulk),
    "tcp_bulk_p8": ("TCP bulk, -P 8 (Gbit/s)", tcp_bulk_p8),
    "tcp_bulk_reverse": ("TCP bulk, -R (Gbit/s)", tcp_bulk_reverse),
    "new_connections": ("new connections/s (wrk, Connection: close)", new_connections),
    "http_keepalive": ("HTTP keep-alive req/s (wrk -c 50)", http_keepalive),
    "udp": ("UDP delivered (Mbit/s)", udp),
    "redis_get_c1": ("redis-benchmark GET -c 1 (req/s)", _redis("get", 1)),
    "redis_set_c1": ("redis-benchmark SET -c 1 (req/s)", _redis("set", 1)),
    "redis_get_c50": ("redis-benchmark GET -c 50 (req/s)", _redis("get", 50)),
    "redis_set_c50": ("redis-benchmark SET -c 50 (req/s)", _redis("set", 50)),
    "pgbench_c1": ("pgbench select-only -c 1 (tps)", _pgbench(1)),
    "pgbench_c16": ("pgbench select-only -c 16 (tps)", _pgbench(16)),
    "idle_memory": ("memory per idle connection (KiB)", idle_memory),
    "fairness": ("echo round trip p99 while another stream moves bulk data (ms)", fairness),
    "session_count": ("agent connections to the hub at 1,000 streams", session_count),
}

Curve = Callable[[Endpoints, Settings], list[Metrics]]
# name: (title, x axis, {metric drawn: unit}, the function); `hub_rss_by_idle` comes from
# idle_memory's checkpoints.
CURVES: dict[str, tuple[str, str, dict[str, str], Curve]] = {
    "keepalive_by_connections": (
        "HTTP keep-alive by concurrent connections (wrk)", "concurrent connections",
        {"rps": "req/s", "p99_ms": "ms"}, keepalive_curve,
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
