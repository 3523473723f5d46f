"""psql, redis-cli and iperf3 through both reach paths: real hub and agent processes on loopback,
`portway reach` (direct after the first connection) beside `portway reach --relay`."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from portway.testing.machines import Background, Machine
from portway.testing.ports import free_port
from portway.testing.programs import require_program
from portway.testing.waiting import wait_until

from .tunnels import expose, postgres, wait_status

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DIRECT = "go directly to the exposing agent"
RELAYED = "are relayed by the hub"


def both_paths(
    machine: Callable[[str], Machine], api: httpx.Client, target: str, name: str
) -> dict[str, tuple[int, Background]]:
    """`name` exposed to `target`, and reached twice: by default and with `--relay`; each
    path's local port and `portway reach` process."""
    expose(machine(f"{name}-server"), target, name)
    wait_status(api, name, "active")
    laptop = machine(f"{name}-laptop")
    reached = {}
    for path, extra in (("direct", ()), ("relayed", ("--relay",))):
        port = free_port()
        process = laptop.start("reach", name, "--port", str(port), *extra)
        process.wait_for("Connected to the hub.")
        reached[path] = (port, process)
    return reached


def check_paths(reached: dict[str, tuple[int, Background]]) -> None:
    """The default reach went direct after its first (relayed) connection; `--relay` never."""
    direct = reached["direct"][1]
    direct.wait_for(DIRECT)
    assert direct.output().index(RELAYED) < direct.output().index(DIRECT)
    relayed = reached["relayed"][1].wait_for(RELAYED)
    assert DIRECT not in relayed


def test_psql_through_both_paths(
    machine: Callable[[str], Machine], api: httpx.Client, postgres_cluster: object
) -> None:
    psql = require_program("psql", package="postgresql-client")
    cluster = postgres(postgres_cluster)
    reached = both_paths(machine, api, f"127.0.0.1:{cluster.port}", "pg-paths")
    for port, _ in reached.values():
        for i in range(3):
            url = f"postgresql://portway@127.0.0.1:{port}/postgres"
            out = subprocess.run(
                [psql, url, "-tAc", f"select {i} + 40"],
                capture_output=True, text=True, timeout=30, check=True,
            )  # fmt: skip
            assert out.stdout.strip() == str(i + 40)
    check_paths(reached)


@pytest.fixture
def redis_port() -> Iterator[int]:
    server = require_program("redis-server", package="redis-server")
    port = free_port()
    origin = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port
    finally:
        origin.terminate()
        origin.wait()


def test_redis_cli_through_both_paths(
    machine: Callable[[str], Machine], api: httpx.Client, redis_port: int
) -> None:
    cli = require_program("redis-cli", package="redis-tools")

    def redis(port: int, *args: str) -> str:
        command = [cli, "-p", str(port), *args]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    wait_until(lambda: redis(redis_port, "ping") == "PONG", what="redis-server")
    reached = both_paths(machine, api, f"127.0.0.1:{redis_port}", "cache-paths")
    for path, (port, _) in reached.items():
        assert redis(port, "set", f"via-{path}", path) == "OK"
        assert redis(port, "get", f"via-{path}") == path
        assert redis(port, "incrby", "counter", "2") in {"2", "4"}
    check_paths(reached)


def iperf3(port: int, *args: str) -> dict[str, object]:
    """One iperf3 test's JSON report. iperf3 takes one client at a time, and the exposing
    agent's checks of the target (the protocol probes when it starts serving, a bare connect
    every 15 s) can hold that slot as a test starts, or leave it refusing the next client
    (seen with iperf3 alone, no tunnel): a test that never began is tried again."""
    deadline = time.monotonic() + 10
    while True:
        done = subprocess.run(
            ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-J", "-t", "1", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        report: dict[str, object] = json.loads(done.stdout)
        started = bool(report.get("intervals"))  # else it never began: the slot was taken
        if "error" not in report or started or time.monotonic() > deadline:
            assert "error" not in report and done.returncode == 0, report.get("error")
            return report
        time.sleep(0.2)


def test_iperf3_through_both_paths(machine: Callable[[str], Machine], api: httpx.Client) -> None:
    require_program("iperf3", package="iperf3")
    port = free_port()
    server = subprocess.Popen(
        ["iperf3", "-s", "-p", str(port), "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: _listening(port), what="iperf3 -s")
        reached = both_paths(machine, api, f"127.0.0.1:{port}", "iperf-paths")
        for local, _ in reached.values():
            for extra in ((), ("-R",)):  # both directions
                report = iperf3(local, *extra)
                end = report["end"]
                assert isinstance(end, dict) and end["sum_received"]["bytes"] > 0
        check_paths(reached)
    finally:
        server.terminate()
        server.wait()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
