"""The ways a client reaches the origins: direct, socat, the two relay-pair floors, and Portway's
paths (the other peers, ssh, stunnel and nginx, are in `bench.peers`).

Every path is a context manager that starts what it needs and yields `Endpoints`: where the
client connects for the iperf3 server (TCP, and UDP where the path carries UDP) and for the HTTP
origin. Everything started is stopped when the block ends, even on errors.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from bench.procs import Proc, port_open, wait_for
from bench.tools import Endpoint
from portway.testing.hub import HubProcess
from portway.testing.machines import Background, Machine
from portway.testing.ports import free_port


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


def free_tcp_udp_port() -> int:
    """A loopback port free for both TCP and UDP (iperf3 uses one number for both)."""
    import socket

    for _ in range(100):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both TCP and UDP")


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


class PortwayStack:
    """One hub (agent TLS on or off), an exposing machine and a reaching machine.

    Tunnels: ``iperf`` (TCP, public), ``iperfu`` (UDP, public), ``web`` (TCP, public),
    ``site`` (HTTP, public URL and a share) and those of the optional origins that run
    (``redis``, ``pg``, ``echo``: TCP, public), each served by its own `portway expose`; the
    reaching machine runs `portway reach` for each TCP and UDP tunnel.
    """

    def __init__(
        self, origins: Origins, work: Path, tls: bool,
        paths: frozenset[str] = frozenset({"public", "reach", "edge", "share"}),
    ) -> None:  # fmt: skip
        self.origins = origins
        self.work = work
        self.tls = tls
        self.paths = paths
        self.hub = HubProcess(work / "hub", agent_tls="on" if tls else "off")
        self.server = Machine(work / "server", self.hub)
        self.laptop = Machine(work / "laptop", self.hub)
        self.api: httpx.Client | None = None
        self.helpers: list[Proc] = []
        self.agents: dict[str, Background] = {}
        self.reach_ports: dict[str, int] = {}
        self.share_prefix = "/"

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> PortwayStack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the hub, then every `expose` and `reach` the chosen paths need, in parallel."""
        self.hub.start()
        self.api = httpx.Client(
            base_url=self.hub.api_url, timeout=30,
            headers={"Authorization": f"Bearer {self.hub.admin_key}"},
        )  # fmt: skip
        self.server.login()
        origin_iperf = f"127.0.0.1:{self.origins.iperf_port}"
        origin_http = f"127.0.0.1:{self.origins.http_port}"
        exposes = [("iperf", origin_iperf, "tcp"), ("iperfu", origin_iperf, "udp"),
                   ("web", origin_http, "tcp")]  # fmt: skip
        exposes += [(name, f"127.0.0.1:{port}", "tcp") for name, port in self.services.items()]
        if self.paths & {"edge", "share"}:
            exposes.append(("site", origin_http, "http"))
        for name, target, protocol in exposes:
            self.agents[f"expose-{name}"] = self.server.start(
                "expose", target, "--name", name, "--protocol", protocol, "--public"
            )
        for name, _target, _protocol in exposes:
            self.agents[f"expose-{name}"].wait_for("Connected to the hub.", timeout=90)
            self.wait_active(name)
        if "reach" in self.paths:
            self.laptop.login()
            ports = {"iperf": free_port(), "iperfu": free_tcp_udp_port(), "web": free_port()}
            ports |= {name: free_port() for name in self.services}
            for name, port in ports.items():
                self.agents[f"reach-{name}"] = self.laptop.start(
                    "reach", name, "--port", str(port), "--bind", "127.0.0.1"
                )
                self.reach_ports[name] = port
            for name in ports:
                self.agents[f"reach-{name}"].wait_for("Connected to the hub.", timeout=90)
            for name, port in ports.items():  # the listener is up shortly after the session
                if name != "iperfu":
                    wait_for(partial(port_open, port), timeout=30, what=f"reach {name}")
        if self.paths & {"edge", "share"}:
            created = self.client.post(
                f"/v1/tunnels/{self.tunnel('site')['id']}/shares", json={"name": "bench"}
            )
            created.raise_for_status()
            self.share_prefix = httpx.URL(created.json()["shareUrl"]).path
        # iperf3 sends its control connection to the UDP port's number over TCP: carry that
        # over plain socat (a few bytes; the measured datagrams go through Portway).
        controls = [self.hub_port("iperfu")]
        if "reach" in self.paths:
            controls.append(self.reach_ports["iperfu"])
        for port in controls:
            self.helpers.append(tcp_forward(
                port, self.origins.iperf_port, self.work / f"iperfu-control-{port}.log"
            ))  # fmt: skip

    def close(self) -> None:
        for helper in self.helpers:
            helper.stop()
        self.helpers.clear()
        self.laptop.stop_all()
        self.server.stop_all()
        if self.api is not None:
            self.api.close()
            self.api = None
        if self.hub.proc is not None:
            self.hub.stop()

    # -- helpers ---------------------------------------------------------------------------

    @property
    def services(self) -> dict[str, int]:
        """The tunnels of the optional origins (``redis``, ``pg``, ``echo``) and their origin
        ports, where they run."""
        found = {"redis": self.origins.redis_port, "pg": self.origins.postgres_port,
                 "echo": self.origins.echo_port}  # fmt: skip
        return {name: port for name, port in found.items() if port}

    def _service_ports(self, port_of: Callable[[str], int]) -> dict[str, int]:
        fields = {"redis": "redis", "pg": "postgres", "echo": "echo"}
        return {fields[name]: port_of(name) for name in self.services}

    @property
    def client(self) -> httpx.Client:
        assert self.api is not None, "stack not started"
        return self.api

    def tunnel(self, name: str) -> dict[str, Any]:
        for attempt in range(3):
            try:
                response = self.client.get(f"/v1/tunnels/{name}")
                break
            except httpx.TransportError:
                # A kept-alive API connection idle past uvicorn's keep-alive timeout may be
                # closed just as it is reused (a long scenario ran meanwhile): try again.
                if attempt == 2:
                    raise
                time.sleep(0.2)
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    def hub_port(self, name: str) -> int:
        return int(self.tunnel(name)["hubPort"])

    def wait_active(self, name: str) -> None:
        """Active, and its agent done probing the target: iperf3's server takes one control
        connection at a time, and a probe still under way would refuse the first test."""

        missing = ["the tunnel"]

        def ready() -> bool:
            tunnel = self.tunnel(name)
            probe = tunnel.get("probe") or {}
            missing[:] = [f"status {tunnel['status']}"] if tunnel["status"] != "active" else []
            if tunnel["protocol"] != "udp" and not probe.get("probedAt"):
                missing.append("no probe finding")
            return not missing

        try:
            wait_for(ready, timeout=60, what=f"{name} active and probed")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc} ({', '.join(missing)})") from None

    @property
    def agent_port(self) -> int:
        """The hub's agent port, where every agent keeps its sessions."""
        return int(self.hub.flags["agent_listen"].rsplit(":", 1)[1])

    @property
    def edge_port(self) -> int:
        return int(self.hub.flags["edge_listen"].rsplit(":", 1)[1])

    @property
    def hub_pid(self) -> int:
        assert self.hub.proc is not None
        return self.hub.proc.pid

    @property
    def pids(self) -> tuple[int, ...]:
        """The hub and every agent process."""
        return (self.hub_pid, *(agent.proc.pid for agent in self.agents.values()))

    @property
    def exposing_pids(self) -> tuple[int, ...]:
        """Every `expose` process: each serves all of the machine's tunnels, and the hub pairs
        a connection with whichever session has the most idle channels."""
        return tuple(a.proc.pid for name, a in self.agents.items() if name.startswith("expose-"))

    # -- the three paths -------------------------------------------------------------------

    def public(self) -> Endpoints:
        return Endpoints(
            iperf_tcp=Endpoint(self.hub_port("iperf")),
            iperf_udp=Endpoint(self.hub_port("iperfu")),
            http=Endpoint(self.hub_port("web")),
            pids={"hub": (self.hub_pid,), "agent": self.exposing_pids},
            http_origin_port=self.origins.http_port,
            agent_port=self.agent_port,
            origin_ports=self.origins.tcp_services(),
        ).serving(self._service_ports(self.hub_port))

    def reach(self) -> Endpoints:
        return Endpoints(
            iperf_tcp=Endpoint(self.reach_ports["iperf"]),
            iperf_udp=Endpoint(self.reach_ports["iperfu"]),
            http=Endpoint(self.reach_ports["web"]),
            # The hub and the exposing agent are measured on the public path; measured again
            # here they would reuse the memory those connections freed (a lower bound only).
            pids={"reach_agent": (self.agents["reach-web"].proc.pid,)},
            http_origin_port=self.origins.http_port,
        ).serving(self._service_ports(self.reach_ports.__getitem__))

    def edge(self) -> Endpoints:
        host = httpx.URL(self.tunnel("site")["publicUrl"]).host
        return Endpoints(
            http=Endpoint(self.edge_port, host_header=f"{host}:{self.edge_port}"),
            pids={"hub": (self.hub_pid,), "agent": self.exposing_pids},
            http_origin_port=self.origins.http_port,
        )

    def share(self) -> Endpoints:
        return Endpoints(
            http=Endpoint(self.edge_port, prefix=self.share_prefix),
            pids={"hub": (self.hub_pid,), "agent": self.exposing_pids},
            http_origin_port=self.origins.http_port,
        )
