"""The servers behind every path (`Origins`) and `origins()`, which starts them: iperf3, the
HTTP origin and the TCP echo origin (both `bench.origin`), a throwaway redis-server and a
PostgreSQL cluster initialised for pgbench."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench.procs import Proc, port_open, wait_for
from portway.testing.ports import free_port
from portway.testing.postgres import find_pg_bin, throwaway_cluster
from portway.testing.redis import throwaway_redis


@dataclass(frozen=True)
class Origins:
    """The servers behind every path: iperf3 (TCP and UDP on one port), the HTTP origin, a
    throwaway redis-server and PostgreSQL cluster for the real database clients, and the TCP
    echo origin of the fairness scenario (0: not run)."""

    iperf_port: int
    http_port: int
    redis_port: int = 0
    postgres_port: int = 0
    echo_port: int = 0

    def tcp_services(self) -> dict[str, int]:
        """The TCP services every relay path forwards, by name (as `Endpoints` fields)."""
        found = {"iperf_tcp": self.iperf_port, "http": self.http_port,
                 "redis": self.redis_port, "postgres": self.postgres_port,
                 "echo": self.echo_port}  # fmt: skip
        return {name: port for name, port in found.items() if port}


def free_tcp_udp_port() -> int:
    """A loopback port free for both TCP and UDP (iperf3 uses one number for both)."""
    for _ in range(100):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both TCP and UDP")


@contextlib.contextmanager
def origins(work: Path, databases: bool = True, echo: bool = False) -> Iterator[Origins]:
    """The iperf3 server (TCP and UDP on one port), the HTTP origin, with `echo` the TCP echo
    origin and, with `databases`, a throwaway redis-server and a PostgreSQL cluster
    initialised for pgbench."""
    iperf_port, http_port = free_tcp_udp_port(), free_port()
    echo_port = free_port() if echo else 0
    procs = [
        Proc(["iperf3", "-s", "-p", str(iperf_port), "--bind", "127.0.0.1"], work / "iperf3.log"),
        Proc([sys.executable, "-m", "bench.origin", str(http_port)], work / "origin.log"),
    ]
    ports = [iperf_port, http_port]
    if echo:
        procs.append(Proc([sys.executable, "-m", "bench.origin", "--echo", str(echo_port)],
                          work / "echo.log"))  # fmt: skip
        ports.append(echo_port)
    try:
        for proc, port in zip(procs, ports, strict=True):
            wait_for(partial(_listening, proc, port), timeout=15, what=proc.args[0])
        with contextlib.ExitStack() as stack:
            redis_port = postgres_port = 0
            if databases:
                redis_port = stack.enter_context(throwaway_redis(_program("redis-server")))
                postgres_port = stack.enter_context(pgbench_cluster())
            yield Origins(iperf_port, http_port, redis_port, postgres_port, echo_port)
    finally:
        for proc in procs:
            proc.stop()


@contextlib.contextmanager
def pgbench_cluster() -> Iterator[int]:
    """A throwaway PostgreSQL cluster with pgbench's tables (scale 1); yields its port."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL's server is not installed (apt-get install postgresql)")
    with throwaway_cluster(bin_dir) as cluster:
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", "1", "-h", cluster.host, "-p", str(cluster.port),
             "-U", cluster.user, "postgres"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        yield cluster.port


def _program(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed (make bench installs it with apt-get)")
    return found


def _listening(proc: Proc, port: int) -> bool:
    if not proc.alive():
        raise RuntimeError(f"{proc.args[0]} exited: {proc.output()[-2000:]}")
    return port_open(port)
