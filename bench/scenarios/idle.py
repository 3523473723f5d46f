"""The scenarios that hold idle connections open through the path: memory per idle
connection (and the RSS-by-idle curve from its checkpoints), and the agents' sessions
counted while 1,000 streams are open."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable

from bench.paths import Endpoints
from bench.procs import established_to, rss_kib, wait_for, wait_quiet
from bench.scenarios.base import Metrics, NotApplicable, Settings, need
from bench.tools import Endpoint


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
    endpoint = need(endpoints.http, "TCP")
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
    endpoint = need(endpoints.http, "TCP")
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
