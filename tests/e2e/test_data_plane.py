"""Tunnels carrying real traffic: real hub, real agents, real servers and clients."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from portway.testing.hub import HubProcess
from portway.testing.machines import Machine
from portway.testing.origins import BulkOrigin, EchoOrigin, download_digest, upload_digest
from portway.testing.ports import closed_port, free_port
from portway.testing.programs import require_program
from portway.testing.waiting import wait_until

pytestmark = pytest.mark.e2e

MB = 1024 * 1024


def tunnel(api: httpx.Client, ref: str) -> dict[str, Any]:
    response = api.get(f"/v1/tunnels/{ref}")
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def wait_status(api: httpx.Client, ref: str, status: str, timeout: float = 20) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        found = tunnel(api, ref)
        return found if found["status"] == status else None

    result = wait_until(reached, timeout=timeout, what=f"{ref} to become {status}")
    assert result is not None
    return result


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


def expose(server: Machine, target: str, name: str, *extra: str) -> None:
    server.start("expose", target, "--name", name, *extra).wait_for("Connected to the hub.")


def reach(laptop: Machine, name: str, port: int) -> None:
    laptop.start("reach", name, "--port", str(port)).wait_for("Connected to the hub.")


def echo_once(port: int, payload: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # half-close: the reply must still arrive whole
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


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
    from portway.testing.postgres import PostgresCluster

    if not isinstance(postgres_cluster, PostgresCluster):
        from portway.testing.programs import unavailable

        unavailable("PostgreSQL server (initdb) is not installed (apt-get install postgresql)")
    assert isinstance(postgres_cluster, PostgresCluster)
    server, laptop = machine("db-server"), machine("db-laptop")
    expose(server, f"127.0.0.1:{postgres_cluster.port}", "prod-db", "--public")
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


def test_revoked_token_is_refused_with_a_reason(
    machine: Callable[[str], Machine], api: httpx.Client
) -> None:
    agent = machine("revoked")
    up = agent.start("up", "--name", "doomed")
    up.wait_for("Connected to the hub.")
    assert api.post("/v1/agents/doomed/rotate-token").status_code == 200
    wait_until(lambda: up.proc.poll() is not None, timeout=20, what="up to exit")
    assert up.proc.returncode == 1
    assert "the hub refused this agent" in up.output()
    again = agent.start("up")
    wait_until(lambda: again.proc.poll() is not None, timeout=20, what="second up to exit")
    assert "does not know this agent token" in again.output()
    assert "Traceback" not in again.output()


def test_hung_agent_is_detected_and_comes_back(
    machine: Callable[[str], Machine], api: httpx.Client
) -> None:
    with EchoOrigin() as echo:
        server = machine("hung-server")
        process = server.start("expose", f"127.0.0.1:{echo.port}", "--name", "hung")
        process.wait_for("Connected to the hub.")
        wait_status(api, "hung", "active")
        process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        wait_status(api, "hung", "connecting", timeout=25)
        assert time.monotonic() - started < 16.5
        process.send_signal(signal.SIGCONT)
        wait_status(api, "hung", "active", timeout=30)


def test_hub_killed_and_restarted_serves_again(
    machine: Callable[[str], Machine], tmp_path: object
) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    own = HubProcess(tmp_path / "restart-hub")
    own.start()
    try:
        with EchoOrigin() as echo:
            server, laptop = Machine(tmp_path / "rs", own), Machine(tmp_path / "rl", own)
            server.login()
            laptop.login()
            try:
                expose(server, f"127.0.0.1:{echo.port}", "survivor", "--public")
                client = httpx.Client(
                    base_url=own.api_url, headers={"Authorization": f"Bearer {own.admin_key}"}
                )
                wait_status(client, "survivor", "active")
                hub_port = int(tunnel(client, "survivor")["hubPort"])
                local = free_port()
                reach(laptop, "survivor", local)
                share = client.post("/v1/tunnels/survivor/shares", json={"name": "keep"})
                assert share.status_code == 201, share.text
                assert echo_once(hub_port, b"before") == b"before"
                own.stop(signal.SIGKILL)
                own.start()
                wait_status(client, "survivor", "active", timeout=30)
                assert wait_until(lambda: _try_echo(hub_port), timeout=15)
                assert wait_until(lambda: _try_echo(local), timeout=15)
                shares = client.get("/v1/tunnels/survivor/shares").json()["items"]
                assert [s["name"] for s in shares] == ["keep"]
                client.close()
            finally:
                server.stop_all()
                laptop.stop_all()
    finally:
        own.stop()


def _try_echo(port: int) -> bool:
    try:
        return echo_once(port, b"after", timeout=5) == b"after"
    except OSError:
        return False


def test_processes_started_together_on_a_fresh_machine_enrol_one_agent(
    machine: Callable[[str], Machine], api: httpx.Client
) -> None:
    with EchoOrigin() as echo:
        box = machine("together")
        started = [
            box.start("expose", f"127.0.0.1:{echo.port}", "--name", f"together-{i}")
            for i in range(3)
        ]
        for process in started:
            process.wait_for("Connected to the hub.")
        owners = {tunnel(api, f"together-{i}")["agentId"] for i in range(3)}
        assert len(owners) == 1
        assert sum("Enrolled this machine" in p.output() for p in started) == 1
