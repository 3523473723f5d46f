"""The ways a client reaches the origins: direct, socat and the two relay-pair floors (Portway's
paths are in `bench.portway_stack`; the other peers, ssh, stunnel and nginx, in `bench.peers`).

Every path is a context manager that starts what it needs and yields `Endpoints`: where the
client connects for the iperf3 server (TCP, and UDP where the path carries UDP) and for the HTTP
origin. Everything started is stopped when the block ends, even on errors.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Proc, port_open, wait_for
from bench.servers import Origins, free_tcp_udp_port
from bench.tools import Endpoint
from portway.testing.ports import free_port


@dataclass
class Endpoints:
    """Where a client connects on one path; None where the path does not carry that traffic."""

    iperf_tcp: Endpoint | None = None
    iperf_udp: Endpoint | None = None  # iperf3's TCP control must reach the same port number
    http: Endpoint | None = None
    redis: Endpoint | None = None
    postgres: Endpoint | None = None
    echo: Endpoint | None = None  # the TCP echo origin (the fairness scenario's round trips)
    # Processes whose memory the idle-connection scenario watches (summed), by role (hub,
    # agent, ...).
    pids: dict[str, tuple[int, ...]] = field(default_factory=dict)
    http_origin_port: int = 0
    # The hub's agent port, where the ``agent`` processes keep their sessions (Portway's paths;
    # 0 elsewhere): the session-count scenario counts their connections to it.
    agent_port: int = 0
    # The origins' ports by service (as `Origins.tcp_services`) where a scenario looks for an
    # agent's connections to one of them (Portway's paths).
    origin_ports: dict[str, int] = field(default_factory=dict)

    def serving(self, ports: Mapping[str, int]) -> Endpoints:
        """Point each named TCP service (a field: ``iperf_tcp``, ``http``, ``redis``,
        ``postgres``, ``echo``) at its loopback port; returns self."""
        for name, port in ports.items():
            assert name in SERVICES, name
            setattr(self, name, Endpoint(port))
        return self


SERVICES = ("iperf_tcp", "http", "redis", "postgres", "echo")


def _socat(listen: str, target: str, log: Path, buffer: int | None = None) -> Proc:
    args = ["socat"]
    if buffer:
        args += ["-b", str(buffer)]
    return Proc([*args, listen, target], log)


def _wait_listening(proc: Proc, port: int, what: str) -> None:
    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{what} exited: {proc.output()[-2000:]}")
        return port_open(port)

    wait_for(ready, timeout=15, what=what)


def _wait_output(proc: Proc, line: str, what: str) -> None:
    def ready() -> bool:
        if line in proc.output().splitlines():
            return True
        if not proc.alive():
            raise RuntimeError(f"{what} exited: {proc.output()[-2000:]}")
        return False

    wait_for(ready, timeout=15, what=what)


@contextlib.contextmanager
def direct(origins: Origins, _work: Path) -> Iterator[Endpoints]:
    yield Endpoints(iperf_udp=Endpoint(origins.iperf_port), http_origin_port=origins.http_port
                    ).serving(origins.tcp_services())  # fmt: skip


def tcp_forward(port: int, target: int, log: Path, buffer: int | None = None) -> Proc:
    """`socat TCP-LISTEN:port,fork,reuseaddr TCP:127.0.0.1:target`, listening once returned."""
    proc = _socat(
        f"TCP4-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,backlog=4096",
        f"TCP4:127.0.0.1:{target}", log, buffer,
    )  # fmt: skip
    _wait_listening(proc, port, f"socat on {port}")
    return proc


@contextlib.contextmanager
def socat(origins: Origins, work: Path, buffer: int | None = None) -> Iterator[Endpoints]:
    """socat relays, one per service (and a UDP one next to iperf3's when `buffer` is None)."""
    procs: list[Proc] = []
    try:
        tag = f"socat-{buffer or 'default'}"
        listen = {name: free_tcp_udp_port() if name == "iperf_tcp" else free_port()
                  for name in origins.tcp_services()}  # fmt: skip
        for name, target in origins.tcp_services().items():
            procs.append(tcp_forward(listen[name], target, work / f"{tag}-{name}.log", buffer))
        udp: Endpoint | None = None
        if buffer is None:
            procs.append(_socat(
                f"UDP4-LISTEN:{listen['iperf_tcp']},bind=127.0.0.1,fork,reuseaddr",
                f"UDP4:127.0.0.1:{origins.iperf_port}", work / f"{tag}-udp.log",
            ))  # fmt: skip
            udp = Endpoint(listen["iperf_tcp"])
        yield Endpoints(
            iperf_udp=udp, pids={"socat": (procs[1].pid,)}, http_origin_port=origins.http_port
        ).serving(listen)
    finally:
        for proc in procs:
            proc.stop()


@contextlib.contextmanager
def relay(origins: Origins, work: Path, tls: bool) -> Iterator[Endpoints]:
    """Two chained bare uvloop relays (`bench.relay`), TLS 1.3 between them when `tls`: the
    floor of a Python relay laid out like the public path. TCP only."""
    certs = work / "relay-certs"
    procs: list[Proc] = []
    try:
        back_iperf, back_http, iperf, http = (free_port() for _ in range(4))
        tag = "tls" if tls else "plain"
        back = Proc(
            [sys.executable, "-m", "bench.relay", f"{back_iperf}:{origins.iperf_port}",
             f"{back_http}:{origins.http_port}", *(["--tls-server", str(certs)] if tls else [])],
            work / f"relay-{tag}-back.log",
        )  # fmt: skip
        procs.append(back)
        _wait_listening(back, back_http, "the back relay")
        front = Proc(
            [sys.executable, "-m", "bench.relay", f"{iperf}:{back_iperf}", f"{http}:{back_http}",
             *(["--tls-client", str(certs)] if tls else [])],
            work / f"relay-{tag}-front.log",
        )  # fmt: skip
        procs.append(front)
        _wait_listening(front, http, "the front relay")
        yield Endpoints(
            iperf_tcp=Endpoint(iperf), http=Endpoint(http),
            pids={"front": (front.pid,), "back": (back.pid,)},
            http_origin_port=origins.http_port,
        )  # fmt: skip
    finally:
        for proc in reversed(procs):
            proc.stop()


@contextlib.contextmanager
def mux(origins: Origins, work: Path, tls: bool, sessions: int = 2) -> Iterator[Endpoints]:
    """The version 2 floor (`bench.mux_relay`): every connection a stream over `sessions`
    long-lived sessions between a front (the hub's place) and a back (the agent's), TLS 1.3
    between them when `tls`. TCP only. (The fairness scenario runs on a pair with one session,
    so that its echo and its bulk share it.)"""
    tag = ("tls" if tls else "plain") + ("" if sessions == 2 else f"-{sessions}s")
    options = ["--sessions", str(sessions), *(["--tls", str(work / "mux-certs")] if tls else [])]
    session_port = free_port()
    listen = {name: free_port() for name in origins.tcp_services()}
    maps = [f"{listen[name]}:{target}" for name, target in origins.tcp_services().items()]
    procs: list[Proc] = []
    try:
        front = Proc([sys.executable, "-m", "bench.mux_relay", "front", str(session_port), *maps,
                      *options], work / f"mux-{tag}-front.log")  # fmt: skip
        procs.append(front)
        # Its certificates exist now. Not probed: a bare connection to the session port would
        # count as one of its sessions without TLS.
        _wait_output(front, "listening", "the mux front's session port")
        back = Proc([sys.executable, "-m", "bench.mux_relay", "back", str(session_port),
                     *options], work / f"mux-{tag}-back.log")  # fmt: skip
        procs.append(back)
        for port in listen.values():
            _wait_listening(front, port, "the mux front")
        yield Endpoints(
            pids={"front": (front.pid,), "back": (back.pid,)}, http_origin_port=origins.http_port
        ).serving(listen)
    finally:
        for proc in reversed(procs):
            proc.stop()
