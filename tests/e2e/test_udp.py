"""UDP tunnels carrying real datagrams: real hub, real agents, real UDP servers and `dig`."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from portway.testing.hub import HubProcess
from portway.testing.machines import Machine
from portway.testing.ports import free_port
from portway.testing.programs import require_program
from portway.testing.udp_origins import DnsOrigin, UdpEchoOrigin
from portway.testing.waiting import wait_until

pytestmark = pytest.mark.e2e

MAX_DATAGRAM = 65507


def tunnel(api: httpx.Client, ref: str) -> dict[str, Any]:
    response = api.get(f"/v1/tunnels/{ref}")
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def wait_active(api: httpx.Client, ref: str) -> dict[str, Any]:
    found = wait_until(
        lambda: (t := tunnel(api, ref))["status"] == "active" and t,
        timeout=20, what=f"{ref} to become active",
    )  # fmt: skip
    assert isinstance(found, dict)
    return found


def expose_udp(server: Machine, port: int, name: str) -> None:
    server.start(
        "expose", f"127.0.0.1:{port}", "--name", name, "--protocol", "udp", "--public"
    ).wait_for("Connected to the hub.")


def reach_udp(laptop: Machine, name: str) -> int:
    local = free_port(kind=socket.SOCK_DGRAM)
    laptop.start("reach", name, "--port", str(local)).wait_for("Connected to the hub.")
    return local


def client(host: str = "127.0.0.1", timeout: float = 10) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024 * 1024)
    sock.settimeout(timeout)
    return sock


def exchange(sock: socket.socket, port: int, payload: bytes, host: str = "127.0.0.1") -> bytes:
    """Send `payload` and return the first reply (UDP: a lost datagram means a timeout)."""
    sock.sendto(payload, (host, port))
    return sock.recv(MAX_DATAGRAM + 1)


def fifty_clients(port: int, host: str = "127.0.0.1") -> None:
    """50 concurrent clients, each sending 5 datagrams and getting exactly its own back."""

    def one(i: int) -> bool:
        with client(host) as sock:
            for n in range(5):
                payload = f"client-{i}-datagram-{n}-".encode() + os.urandom(200)
                if exchange(sock, port, payload, host) != payload:
                    return False
        return True

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        assert all(pool.map(one, range(50)))


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_udp_echo_through_hub_port_and_reach_with_50_clients(
    machine: Callable[[str], Machine], api: httpx.Client
) -> None:
    with UdpEchoOrigin() as echo:
        server, laptop = machine("udp-server"), machine("udp-laptop")
        expose_udp(server, echo.port, "udp-echo")
        hub_port = int(wait_active(api, "udp-echo")["hubPort"])
        local = reach_udp(laptop, "udp-echo")
        fifty_clients(hub_port)
        fifty_clients(local)
        if has_ipv6_loopback():
            with client("::1") as sock:
                assert exchange(sock, local, b"over ipv6", "::1") == b"over ipv6"

        # Datagrams up to 65,507 bytes arrive whole and unaltered, both ways, both paths.
        big = os.urandom(MAX_DATAGRAM)
        for port in (hub_port, local):
            with client() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1024 * 1024)
                assert exchange(sock, port, big) == big
                assert exchange(sock, port, b"") == b""  # empty datagrams are UDP too

        # Each visitor had its own session, so its own socket towards the target.
        assert len(echo.senders) >= 100
        wait_until(
            lambda: tunnel(api, "udp-echo")["stats"]["datagramsIn"] >= 2 * 250 + 4,
            timeout=5, what="datagram counters",
        )  # fmt: skip
        stats = tunnel(api, "udp-echo")["stats"]
        assert stats["datagramsOut"] >= 2 * 250 + 4
        assert stats["bytesIn"] >= 2 * MAX_DATAGRAM


def test_dig_through_udp_tunnel(machine: Callable[[str], Machine], api: httpx.Client) -> None:
    dig = require_program("dig", package="bind9-dnsutils")
    with DnsOrigin({"api.portway.test": "192.0.2.44"}) as dns:
        server, laptop = machine("dns-server"), machine("dns-laptop")
        expose_udp(server, dns.port, "dns")
        hub_port = int(wait_active(api, "dns")["hubPort"])
        local = reach_udp(laptop, "dns")
        for port in (hub_port, local):
            query = [dig, "@127.0.0.1", "-p", str(port), "+tries=1", "+time=5"]
            out = subprocess.run(
                [*query, "api.portway.test", "A"],
                capture_output=True, text=True, timeout=30, check=True,
            )  # fmt: skip
            assert "status: NOERROR" in out.stdout, out.stdout
            assert "192.0.2.44" in out.stdout
            missing = subprocess.run(
                [*query, "nope.test", "A"],
                capture_output=True, text=True, timeout=30, check=True,
            )  # fmt: skip
            assert "status: NXDOMAIN" in missing.stdout, missing.stdout


def test_idle_sessions_expire(machine: Callable[[str], Machine], api: httpx.Client) -> None:
    with UdpEchoOrigin() as echo:
        server, laptop = machine("idle-server"), machine("idle-laptop")
        expose_udp(server, echo.port, "idle-echo")
        wait_active(api, "idle-echo")
        patched = api.patch("/v1/tunnels/idle-echo", json={"metadata": {"udpIdleTimeout": 1}})
        assert patched.status_code == 200, patched.text
        hub_port = int(tunnel(api, "idle-echo")["hubPort"])
        local = reach_udp(laptop, "idle-echo")
        for port in (hub_port, local):
            with client() as sock:
                before = len(echo.senders)
                assert exchange(sock, port, b"first") == b"first"
                assert exchange(sock, port, b"same session") == b"same session"
                assert len(echo.senders) == before + 1
                # After a second of silence the session ends (the hub counts it closed) ...
                wait_until(
                    lambda: sessions_ended(api, "idle-echo", len(echo.senders)),
                    timeout=10, what="the idle session to expire",
                )  # fmt: skip
                # ... and the same client's next datagram opens a new one.
                assert exchange(sock, port, b"again") == b"again"
                assert len(echo.senders) == before + 2


def sessions_ended(api: httpx.Client, ref: str, opened: int) -> bool:
    """The hub reported at least `opened` sessions, and none is live any more."""
    stats = tunnel(api, ref)["stats"]
    return bool(stats["totalConnections"] >= opened and stats["activeConnections"] == 0)


def silent(sock: socket.socket, port: int, payload: bytes, wait: float = 1.5) -> bool:
    """True when `payload` gets no reply within `wait` seconds."""
    sock.settimeout(wait)
    try:
        exchange(sock, port, payload)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(10)
    return False


def test_pause_resume_and_delete(machine: Callable[[str], Machine], api: httpx.Client) -> None:
    with UdpEchoOrigin() as echo:
        server, laptop = machine("udp-pause-server"), machine("udp-pause-laptop")
        expose_udp(server, echo.port, "udp-pausable")
        hub_port = int(wait_active(api, "udp-pausable")["hubPort"])
        local = reach_udp(laptop, "udp-pausable")
        with client() as public, client() as near:
            assert exchange(public, hub_port, b"ping") == b"ping"
            assert exchange(near, local, b"ping") == b"ping"
            senders = len(echo.senders)
            wait_until(
                lambda: tunnel(api, "udp-pausable")["stats"]["activeConnections"] == 2,
                timeout=5, what="both sessions to be counted",
            )  # fmt: skip

            started = time.monotonic()
            assert api.patch("/v1/tunnels/udp-pausable", json={"status": "paused"}).is_success
            wait_until(
                lambda: tunnel(api, "udp-pausable")["stats"]["activeConnections"] == 0,
                timeout=5, what="live sessions to close",
            )  # fmt: skip
            assert time.monotonic() - started < 5
            assert silent(public, hub_port, b"while paused")
            assert silent(near, local, b"while paused")
            assert len(echo.senders) == senders  # nothing reached the target
            wait_until(
                lambda: tunnel(api, "udp-pausable")["stats"]["datagramsDropped"] >= 1,
                timeout=5, what="dropped datagrams to be counted",
            )  # fmt: skip

            assert api.patch("/v1/tunnels/udp-pausable", json={"status": "active"}).is_success
            wait_active(api, "udp-pausable")
            assert wait_until(lambda: not silent(public, hub_port, b"back", 1), timeout=10)
            assert wait_until(lambda: not silent(near, local, b"back", 1), timeout=10)

            assert api.delete("/v1/tunnels/udp-pausable").status_code == 204
            wait_until(lambda: udp_bindable(hub_port), timeout=5, what="the hub port to be freed")
            assert silent(near, local, b"after delete")


def udp_bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_share_of_a_udp_tunnel_works_with_join(
    machine: Callable[[str], Machine], hub: HubProcess, api: httpx.Client, tmp_path: Path
) -> None:
    with UdpEchoOrigin() as echo:
        server = machine("udp-share-server")
        expose_udp(server, echo.port, "udp-shared")
        wait_active(api, "udp-shared")
        created = server.json("share", "udp-shared", "--name", "udp-friend")
        guest = Machine(tmp_path / "udp-guest", hub)  # no login, no profile
        try:
            local = free_port(kind=socket.SOCK_DGRAM)
            joined = guest.start("join", created["shareUrl"], "--port", str(local))
            joined.wait_for("Connected to the hub.")
            assert "(UDP)" in joined.output()
            with client() as sock:
                for n in range(3):
                    assert exchange(sock, local, f"guest {n}".encode()) == f"guest {n}".encode()
                assert api.delete(f"/v1/shares/{created['id']}").status_code == 204
                assert wait_until(
                    lambda: silent(sock, local, b"after revocation", 1), timeout=10,
                    what="revocation to stop the datagrams",
                )  # fmt: skip
        finally:
            guest.stop_all()


def test_agent_loss_and_return(machine: Callable[[str], Machine], api: httpx.Client) -> None:
    with UdpEchoOrigin() as echo:
        server = machine("udp-lost-server")
        expose_udp(server, echo.port, "udp-lost")
        hub_port = int(wait_active(api, "udp-lost")["hubPort"])
        with client() as sock:
            assert exchange(sock, hub_port, b"before") == b"before"
            server.stop_all()  # the exposing agent goes away: its sessions end with it
            wait_until(
                lambda: tunnel(api, "udp-lost")["status"] == "connecting",
                timeout=20, what="the tunnel to lose its agent",
            )  # fmt: skip
            assert silent(sock, hub_port, b"nobody home")
            expose_udp(server, echo.port, "udp-lost")
            wait_active(api, "udp-lost")
            assert wait_until(lambda: not silent(sock, hub_port, b"back", 1), timeout=10)
