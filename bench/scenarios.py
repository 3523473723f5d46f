"""The scenarios: each takes a path's `Endpoints` and returns a dict of numbers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial

from bench.paths import Endpoints, PortwayStack
from bench.procs import rss_kib, wait_for
from bench.tools import Endpoint, iperf3_tcp, iperf3_udp, wrk


@dataclass(frozen=True)
class Settings:
    """How long and how hard each scenario runs (``--quick`` and ``--smoke`` shrink them)."""

    bulk_seconds: float = 10
    http_seconds: float = 5
    udp_seconds: float = 5
    udp_rate_mbit: float = 100
    http_connections: int = 50
    idle_connections: int = 10_000
    idle_seconds: float = 90  # opening stops after this long; what reached the origin counts


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


def origin_open_connections(origin_port: int) -> int:
    """How many connections the HTTP origin holds right now (not counting this one)."""
    with socket.create_connection(("127.0.0.1", origin_port), timeout=5) as sock:
        sock.sendall(b"GET /_stats HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return int(data.split(b"\r\n\r\n", 1)[1]) - 1


def idle_memory(endpoints: Endpoints, settings: Settings) -> Metrics:
    """RSS growth of the hub and agents per idle proxied connection.

    Opens connections in batches of 250 and waits for each batch to reach the origin, up to
    `settings.idle_connections` or until `settings.idle_seconds` have passed (then the
    connections that did reach the origin are the ones counted).
    """
    endpoint = _need(endpoints.http, "TCP")
    if not endpoints.pids:
        raise NotApplicable("no Portway process to measure")
    origin = endpoints.http_origin_port
    # Connections of the previous scenario may still be closing: start from a quiet origin.
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: origin_open_connections(origin) == 0, timeout=30,
                 what="the origin to be idle", step=0.2)  # fmt: skip
    baseline = origin_open_connections(origin)
    time.sleep(0.5)
    before = {role: sum(map(rss_kib, pids)) for role, pids in endpoints.pids.items()}
    socks: list[socket.socket] = []
    started = time.monotonic()
    deadline = started + settings.idle_seconds
    reached = 0
    stalled = False
    try:
        while not stalled and len(socks) < settings.idle_connections:
            for _ in range(min(250, settings.idle_connections - len(socks))):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.connect((endpoint.host, endpoint.port))
                socks.append(sock)
            progress = time.monotonic()
            while reached < len(socks):
                now = origin_open_connections(origin) - baseline
                if now > reached:
                    reached, progress = now, time.monotonic()
                # A connection refused or reset on the way never arrives: stop opening when
                # nothing new reaches the origin for 5 s (or at the time limit).
                if time.monotonic() - progress > 5 or time.monotonic() > deadline:
                    stalled = True
                    break
                time.sleep(0.05)
        open_seconds = time.monotonic() - started
        time.sleep(1.0)  # let buffers settle
        reached = origin_open_connections(origin) - baseline
        after = {role: sum(map(rss_kib, pids)) for role, pids in endpoints.pids.items()}
    finally:
        for sock in socks:
            sock.close()
    if reached <= 0:
        raise RuntimeError(f"none of {len(socks)} idle connections reached the origin")
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: origin_open_connections(origin) <= baseline, timeout=60,
                 what="idle connections to close", step=0.2)  # fmt: skip
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
    "idle_memory": ("memory per idle connection (KiB)", idle_memory),
}
