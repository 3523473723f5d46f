"""Portway's paths: one `PortwayStack` per agent-TLS mode (a real hub, an exposing machine and
a reaching machine), whose `public`, `reach` (for each of `REACH_PATHS`), `edge` and `share`
give each path's `Endpoints`. `bench.runner` starts one per mode with the chosen paths."""

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

# The reach paths: the options of their `portway reach` processes and the suffix of the tunnels
# they reach (`CLEAR`: the same tunnels exposed again with `--no-e2e`, by a second machine).
CLEAR = "-clear"
REACH_PATHS: dict[str, tuple[tuple[str, ...], str]] = {
    "reach": ((), ""),  # what a user gets: direct when it can (once it lands), end to end
    "reach-relayed": (("--relay",), ""),  # always through the hub, end to end encrypted
    "reach-clear": (("--relay",), CLEAR),  # through the hub, decrypted there (as before e2e)
}
ALL_PATHS = frozenset({"public", *REACH_PATHS, "edge", "share"})


class PortwayStack:
    """One hub (agent TLS on or off), an exposing machine and a reaching machine.

    Tunnels: ``iperf`` (TCP, public), ``iperfu`` (UDP, public), ``web`` (TCP, public),
    ``site`` (HTTP, public URL and a share) and those of the optional origins that run
    (``redis``, ``pg``, ``echo``: TCP, public), each served by its own `portway expose`; the
    reaching machine runs `portway reach` for each TCP and UDP tunnel and each chosen reach path.
    With ``reach-clear`` a second exposing machine serves those tunnels again, named with
    `CLEAR` and exposed with ``--no-e2e`` (its own processes, so that the other paths' exposing
    agents stay the same whatever paths run).
    """

    def __init__(
        self, origins: Origins, work: Path, tls: bool, paths: frozenset[str] = ALL_PATHS
    ) -> None:
        self.origins = origins
        self.work = work
        self.tls = tls
        self.paths = paths
        self.hub = HubProcess(work / "hub", agent_tls="on" if tls else "off")
        self.server = Machine(work / "server", self.hub)
        self.laptop = Machine(work / "laptop", self.hub)
        self.clear_server = Machine(work / "server-clear", self.hub)
        self.api: httpx.Client | None = None
        self.helpers: list[Proc] = []
        self.agents: dict[str, Background] = {}
        # By reach path, then by tunnel (without `CLEAR`): the local port of its `portway reach`.
        self.reach_ports: dict[str, dict[str, int]] = {}
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
        """Start the hub, then every `expose` (`exposes`) and `reach` (`reaches`) the chosen
        paths need, in parallel."""
        self.hub.start()
        self.api = httpx.Client(
            base_url=self.hub.api_url, timeout=30,
            headers={"Authorization": f"Bearer {self.hub.admin_key}"},
        )  # fmt: skip
        exposes, reaches = self.exposes(), self.reaches()
        self.server.login()
        if any(not e2e for *_tunnel, e2e in exposes):
            self.clear_server.login()
        for name, target, protocol, e2e in exposes:
            machine = self.server if e2e else self.clear_server
            self.agents[f"expose-{name}"] = machine.start(
                "expose", target, "--name", name, "--protocol", protocol, "--public",
                *(() if e2e else ("--no-e2e",)),
            )  # fmt: skip
        for name, *_rest in exposes:
            self.agents[f"expose-{name}"].wait_for("Connected to the hub.", timeout=90)
            self.wait_active(name)
        if reaches:
            self.laptop.login()
        for path, name, options in reaches:
            port = free_tcp_udp_port() if name == "iperfu" else free_port()
            self.agents[f"{path}-{name}"] = self.laptop.start(
                "reach", name + REACH_PATHS[path][1], "--port", str(port), "--bind", "127.0.0.1",
                *options,
            )  # fmt: skip
            self.reach_ports.setdefault(path, {})[name] = port
        for path, name, _options in reaches:
            self.agents[f"{path}-{name}"].wait_for("Connected to the hub.", timeout=90)
        for path, name, _options in reaches:  # the listener is up shortly after the session
            if name != "iperfu":
                port = self.reach_ports[path][name]
                wait_for(partial(port_open, port), timeout=30, what=f"{path} {name}")
        if self.paths & {"edge", "share"}:
            created = self.client.post(
                f"/v1/tunnels/{self.tunnel('site')['id']}/shares", json={"name": "bench"}
            )
            created.raise_for_status()
            self.share_prefix = httpx.URL(created.json()["shareUrl"]).path
        # iperf3 sends its control connection to the UDP port's number over TCP: carry that
        # over plain socat (a few bytes; the measured datagrams go through Portway).
        controls = [self.hub_port("iperfu"), *(p["iperfu"] for p in self.reach_ports.values())]
        for port in controls:
            self.helpers.append(tcp_forward(
                port, self.origins.iperf_port, self.work / f"iperfu-control-{port}.log"
            ))  # fmt: skip

    def exposes(self) -> list[tuple[str, str, str, bool]]:
        """(tunnel, target, protocol, end to end) of every `portway expose` the chosen paths
        need: the reach tunnels (``iperf``, ``iperfu``, ``web`` and the optional origins'),
        always (the public path and the hub restart use them); ``site`` for the edge and
        shares; the reach tunnels again, named with `CLEAR` and not end to end, for
        ``reach-clear``."""
        iperf, http = f"127.0.0.1:{self.origins.iperf_port}", f"127.0.0.1:{self.origins.http_port}"
        reached = [("iperf", iperf, "tcp"), ("iperfu", iperf, "udp"), ("web", http, "tcp")]
        reached += [(name, f"127.0.0.1:{port}", "tcp") for name, port in self.services.items()]
        found = [(name, target, protocol, True) for name, target, protocol in reached]
        if self.paths & {"edge", "share"}:
            found.append(("site", http, "http", True))
        if "reach-clear" in self.paths:
            found += [(name + CLEAR, target, protocol, False) for name, target, protocol in reached]
        return found

    def reaches(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(reach path, tunnel without its suffix, options) of every `portway reach` the chosen
        paths need: one per reach tunnel (TCP and UDP) and chosen path of `REACH_PATHS`."""
        names = ["iperf", "iperfu", "web", *self.services]
        return [(path, name, options) for path, (options, _suffix) in REACH_PATHS.items()
                if path in self.paths for name in names]  # fmt: skip

    def close(self) -> None:
        for helper in self.helpers:
            helper.stop()
        self.helpers.clear()
        self.laptop.stop_all()
        self.clear_server.stop_all()
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
        """Every `expose` process of the exposing machine (not the ``reach-clear`` one's): each
        serves all of the machine's tunnels, and the hub pairs a connection with whichever
        session has the most idle channels."""
        return tuple(background.proc.pid for background in self.server.running)

    # -- the paths -------------------------------------------------------------------------

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

    def reach(self, path: str = "reach") -> Endpoints:
        """The `portway reach` processes of one of `REACH_PATHS`."""
        ports = self.reach_ports[path]
        return Endpoints(
            iperf_tcp=Endpoint(ports["iperf"]),
            iperf_udp=Endpoint(ports["iperfu"]),
            http=Endpoint(ports["web"]),
            # The hub and the exposing agent are measured on the public path; measured again
            # here they would reuse the memory those connections freed (a lower bound only).
            pids={"reach_agent": (self.agents[f"{path}-web"].proc.pid,)},
            http_origin_port=self.origins.http_port,
        ).serving(self._service_ports(ports.__getitem__))

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
