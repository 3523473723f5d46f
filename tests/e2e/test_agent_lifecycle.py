"""Agents' lives with real processes: a token revoked under a running agent, a hung agent
detected and back, the hub killed and restarted under its agents, and processes started
together on a fresh machine enrolling one agent."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import httpx
import pytest

from portway.testing.hub import HubProcess
from portway.testing.machines import Machine
from portway.testing.origins import EchoOrigin
from portway.testing.ports import free_port
from portway.testing.waiting import wait_until

from .tunnels import echo_once, expose, reach, tunnel, wait_status

pytestmark = pytest.mark.e2e


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
