"""The hub-restart scenario: SIGKILL the hub, start it again, and time until the paths serve."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from functools import partial

from bench.portway_stack import PortwayStack
from bench.scenarios.base import Metrics
from bench.tools import Endpoint


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
