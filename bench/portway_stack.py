"""Portway's paths: one `PortwayStack` per agent-TLS mode (a real hub, an exposing machine and
a reaching machine), whose `public`, `reach`, `edge` and `share` give each path's `Endpoints`."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from bench.paths import Endpoints, tcp_forward
from bench.procs import Proc, port_open, wait_for
from bench.servers import Origins, free_tcp_udp_port
from bench.tools import Endpoint
from portway.testing.hub import HubProcess
from portway.testing.machines import Background, Machine
from portway.testing.ports import free_port


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
