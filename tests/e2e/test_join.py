"""TCP shares: `portway join SHARE_URL` carries a redis-cli session with no account, the hub
checks the share at connect time and ends live connections once it is revoked."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from portway.testing.hub import HubProcess
from portway.testing.machines import Machine
from portway.testing.ports import free_port
from portway.testing.programs import require_program
from portway.testing.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    server = require_program("redis-server")
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: _answers(port), timeout=10, what="redis-server")
        yield port
    finally:
        proc.terminate()
        proc.wait()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(10) == b"+PONG\r\n"
    except OSError:
        return False


def redis_cli(port: int, *args: str) -> str:
    cli = require_program("redis-cli", package="redis-tools")
    out = subprocess.run(
        [cli, "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    return out.stdout.strip()


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_join_carries_redis_and_revocation_ends_it(
    machine: Callable[[str], Machine], hub: HubProcess, api: httpx.Client, redis_port: int,
    tmp_path: Path,
) -> None:  # fmt: skip
    server = machine("server")
    server.start(
        "expose", f"127.0.0.1:{redis_port}", "--name", "cache", "--protocol", "tcp"
    ).wait_for("Connected to the hub.")
    wait_until(
        lambda: api.get("/v1/tunnels/cache").json().get("status") == "active",
        timeout=20, what="cache to become active",
    )  # fmt: skip
    created = server.json("share", "cache", "--name", "friend", "--rate-limit", "100")
    url = created["shareUrl"]
    assert "/v1/join/pws_" in url
    assert httpx.get(url).json()["tunnel"]["name"] == "cache"

    guest = Machine(tmp_path / "guest", hub)  # no login, no profile
    try:
        local = free_port()
        guest.start("join", url, "--port", str(local)).wait_for("Connected to the hub.")
        assert redis_cli(local, "SET", "greeting", "hello") == "OK"
        assert redis_cli(local, "GET", "greeting") == "hello"

        live = socket.create_connection(("127.0.0.1", local), timeout=5)
        live.sendall(b"PING\r\n")
        assert live.recv(10) == b"+PONG\r\n"
        assert api.delete(f"/v1/shares/{created['id']}").status_code == 204
        live.settimeout(0.2)
        assert wait_until(lambda: closed_by_peer(live), timeout=3, what="live connection to end")
        live.close()
        assert httpx.get(url).status_code == 410
        refused = guest.run("join", url, "--port", str(free_port()), check=False)
        assert refused.returncode != 0 and "revoked" in refused.stderr
    finally:
        guest.stop_all()

    def logged() -> bool:
        items = api.get(f"/v1/shares/{created['id']}/access-logs").json()["items"]
        return len(items) >= 3 and all(item["method"] == "CONNECT" for item in items)

    assert wait_until(logged, timeout=10, what="join connections in the access log")
