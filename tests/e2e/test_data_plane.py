"""Tunnels carrying real traffic: real hub, real agents, real servers and clients."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
from collections.abc import Callable

import httpx
import pytest

from portway.testing.machines import Machine
from portway.testing.origins import BulkOrigin, EchoOrigin, download_digest, upload_digest
from portway.testing.ports import free_port
from portway.testing.programs import require_program
from portway.testing.waiting import wait_until

from .tunnels import echo_once, expose, postgres, reach, tunnel, wait_status

pytestmark = pytest.mark.e2e

MB = 1024 * 1024


def test_http_server_through_reach_and_public_port(
    machine: Callable[[str], Machine], api: httpx.Client, tmp_path: object
) -> None:
    curl = require_program("curl")
    port = free_port()
    origin = subprocess.Popen(
        ["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=os.path.dirname(__file__), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        server, laptop = machine("server"), machine("laptop")
        expose(server, f"127.0.0.1:{port}", "docs", "--public", "--protocol", "tcp")
        wait_status(api, "docs", "active")
        local = free_port()
        reach(laptop, "docs", local)
        for url in (
            f"http://127.0.0.1:{local}/conftest.py",
            f"http://127.0.0.1:{tunnel(api, 'docs')['hubPort']}/conftest.py",
        ):
            out = subprocess.run(
                [curl, "-sf", "--max-time", "10", url], capture_output=True, check=True
            )
            assert b"Real hub and agent processes" in out.stdout
    finally:
        origin.terminate()
        origin.wait()


def test_postgres_with_psql_through_reach_and_public_port(
    machine: Callable[[str], Machine], api: httpx.Client, postgres_cluster: object
) -> None:
    psql = require_program("psql", package="postgresql-client")
    cluster = postgres(postgres_cluster)
    server, laptop = machine("db-server"), machine("db-laptop")
    expose(server, f"127.0.0.1:{cluster.port}", "prod-db", "--public")
    wait_status(api, "prod-db", "active")
    local = free_port()
    reach(laptop, "prod-db", local)
    hub_port = tunnel(api, "prod-db")["hubPort"]
    for port in (local, hub_port):
        out = subprocess.run(
            [psql, f"postgresql://portway@127.0.0.1:{port}/postgres", "-tAc", "select 40 + 2"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert out.stdout.strip() == "42"


def test_redis_cli_through_reach(
    machine: Callable[[str], Machine], api: httpx.Client, tmp_path: object
) -> None:
    redis_server = require_program("redis-server", package="redis-server")
    redis_cli = require_program("redis-cli", package="redis-tools")
    port = free_port()
    origin = subprocess.Popen(
        [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def redis(port: int, *args: str) -> subprocess.CompletedProcess[str]:
        command = [redis_cli, "-p", str(port), *args]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    try:
        wait_until(lambda: redis(port, "ping").returncode == 0, what="redis-server")
        server, laptop = machine("cache-server"), machine("cache-laptop")
        expose(server, f"127.0.0.1:{port}", "cache")
        wait_status(api, "cache", "active")
        local = free_port()
        reach(laptop, "cache", local)
        assert redis(local, "set", "greeting", "hello").stdout.strip() == "OK"
        assert redis(local, "get", "greeting").stdout.strip() == "hello"
    finally:
        origin.terminate()
        origin.wait()


def test_100_mb_each_way_and_200_concurrent_connections(
    machine: Callable[[str], Machine], api: httpx.Client
) -> None:
    with BulkOrigin() as bulk, EchoOrigin() as echo:
        server, laptop = machine("bulk-server"), machine("bulk-laptop")
        expose(server, f"127.0.0.1:{bulk.port}", "bulk")
        expose(server, f"127.0.0.1:{echo.port}", "echo", "--public")
        wait_status(api, "bulk", "active")
        wait_status(api, "echo", "active")
        bulk_local, echo_local = free_port(), free_port()
        reach(laptop, "bulk", bulk_local)
        reach(laptop, "echo", echo_local)

        sent, received = upload_digest("127.0.0.1", bulk_local, 100 * MB)
        assert sent == received
        from portway.testing.origins import pattern_digest

        digest, size = download_digest("127.0.0.1", bulk_local, 100 * MB)
        assert size == 100 * MB
        assert digest == pattern_digest(100 * MB)

        def one(i: int, port: int) -> bool:
            payload = os.urandom(1000) + f"client-{i}".encode() * 200
            return echo_once(port, payload, timeout=60) == payload

        hub_port = int(tunnel(api, "echo")["hubPort"])
        for port in (echo_local, hub_port):
            with concurrent.futures.ThreadPoolExecutor(200) as pool:
                results = list(pool.map(one, range(200), [port] * 200))
            assert all(results)

        # Counters reach the API within 5 s (the hub flushes them every 2 s). Each figure is
        # waited for: what ended just after one flush shows only after the next.
        def bulk_counted(stats: dict[str, int]) -> bool:
            return stats["bytesIn"] >= 100 * MB and stats["bytesOut"] >= 100 * MB

        def echo_closed(stats: dict[str, int]) -> bool:
            return stats["totalConnections"] >= 400 and stats["activeConnections"] == 0

        wait_until(lambda: bulk_counted(tunnel(api, "bulk")["stats"]), timeout=5,
                   what="100 MB counted each way")  # fmt: skip
        assert tunnel(api, "bulk")["stats"]["totalConnections"] == 2
        wait_until(lambda: echo_closed(tunnel(api, "echo")["stats"]), timeout=5,
                   what="400 echo connections counted and closed")  # fmt: skip
