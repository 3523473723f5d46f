"""Tunnels changed through the API while real processes serve them: paused, resumed and deleted
with connections open, put in error by a denied or a refused target, and bound to a port of a
second agent by `connect`."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
import pytest

from portway.testing.machines import Machine
from portway.testing.origins import EchoOrigin
from portway.testing.ports import closed_port, free_port
from portway.testing.waiting import wait_until

from .tunnels import echo_once, expose, reach, tunnel, wait_status

pytestmark = pytest.mark.e2e


def closed_by_peer(sock: socket.socket) -> bool:
    """True when the peer ended the connection (EOF or reset) instead of answering."""
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True


def refused(port: int) -> bool:
    """A new connection through `port` is closed or reset instead of echoed."""
    try:
        return echo_once(port, b"hello", timeout=5) != b"hello"
    except OSError:
        return True


def test_pause_resume_delete(machine: Callable[[str], Machine], api: httpx.Client) -> None:
    with EchoOrigin() as echo:
        server, laptop = machine("pause-server"), machine("pause-laptop")
        expose(server, f"127.0.0.1:{echo.port}", "pausable", "--public")
        wait_status(api, "pausable", "active")
        local = free_port()
        reach(laptop, "pausable", local)
        hub_port = int(tunnel(api, "pausable")["hubPort"])
        live = socket.create_connection(("127.0.0.1", hub_port), timeout=10)
        live.sendall(b"ping")
        assert live.recv(10) == b"ping"

        started = time.monotonic()
        assert api.patch("/v1/tunnels/pausable", json={"status": "paused"}).status_code == 200
        live.settimeout(5)
        assert closed_by_peer(live)
        assert time.monotonic() - started < 2.0
        live.close()
        assert refused(local)
        assert refused(hub_port)
        out = laptop.running[-1].wait_for("paused", timeout=10)
        assert "tunnel pausable is paused" in out

        assert api.patch("/v1/tunnels/pausable", json={"status": "active"}).status_code == 200
        wait_status(api, "pausable", "active")
        assert echo_once(local, b"back") == b"back"
        assert echo_once(hub_port, b"back") == b"back"

        live = socket.create_connection(("127.0.0.1", hub_port), timeout=10)
        live.sendall(b"x")
        assert live.recv(1) == b"x"
        started = time.monotonic()
        assert api.delete("/v1/tunnels/pausable").status_code == 204
        live.settimeout(5)
        assert closed_by_peer(live)
        assert time.monotonic() - started < 2.0
        live.close()
        # The hub port is free again.
        wait_until(lambda: _bindable(hub_port), timeout=5, what="hub port to be released")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_denied_target_and_refused_target_put_tunnel_in_error(
    machine: Callable[[str], Machine], api: httpx.Client
) -> None:
    server = machine("policy-server")
    expose(server, "169.254.169.254:80", "metadata")
    wait_status(api, "metadata", "error")
    wait_until(
        lambda: "link-local" in str(tunnel(api, "metadata")["statusReason"]),
        timeout=10, what="the denial's reason",
    )  # fmt: skip
    with closed_port() as refusing:
        expose(server, f"127.0.0.1:{refusing}", "nothing-there")
        wait_status(api, "nothing-there", "error")
        wait_until(
            lambda: "refused" in str(tunnel(api, "nothing-there")["statusReason"]),
            timeout=10, what="the refusal's reason",
        )  # fmt: skip
    # The first tunnel stays in error while the second process serves it too.
    assert tunnel(api, "metadata")["status"] == "error"


def test_connect_api_binds_a_port_on_a_second_agent(
    machine: Callable[[str], Machine], api: httpx.Client
) -> None:
    with EchoOrigin() as echo:
        server, other = machine("connect-server"), machine("connect-other")
        expose(server, f"127.0.0.1:{echo.port}", "api-echo")
        wait_status(api, "api-echo", "active")
        up = other.start("up", "--name", "second")
        up.wait_for("Connected to the hub.")
        second = api.get("/v1/agents/second").json()
        local = free_port()
        created = api.post(
            "/v1/tunnels/api-echo/connect", json={"agentId": second["id"], "localPort": local}
        )
        assert created.status_code == 201, created.text
        started = time.monotonic()
        wait_until(lambda: not _bindable(local), timeout=2.5, what="the second agent to bind")
        assert time.monotonic() - started < 2.5
        assert echo_once(local, b"via connect") == b"via connect"
        conn = created.json()
        wait_until(
            lambda: (
                api.get("/v1/tunnels/api-echo/connections").json()["items"][0]["status"] == "bound"
            ),
            timeout=5,
        )
        assert api.delete(f"/v1/tunnels/api-echo/connections/{conn['id']}").status_code == 204
        wait_until(lambda: _bindable(local), timeout=5, what="the port to be unbound")
