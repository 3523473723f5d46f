"""Real hub and agent processes on loopback, for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from portway.testing.http_origin import HttpOrigin
from portway.testing.hub import HubProcess
from portway.testing.machines import Machine
from portway.testing.waiting import wait_until

from .agent_pair import AgentPair, Echo, start_pair


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    process = HubProcess(tmp_path_factory.mktemp("e2e") / "hub")
    process.start()
    yield process
    process.stop()


@pytest.fixture
def machine(hub: HubProcess, tmp_path: Path) -> Iterator[Callable[[str], Machine]]:
    """Make logged-in machines (own profiles); every process they started is stopped after."""
    made: list[Machine] = []

    def make(name: str) -> Machine:
        created = Machine(tmp_path / name, hub)
        created.login()
        made.append(created)
        return created

    yield make
    for created in made:
        created.stop_all()


@pytest.fixture
def api(hub: HubProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=hub.api_url, headers={"Authorization": f"Bearer {hub.admin_key}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture(scope="module")
def origin() -> Iterator[HttpOrigin]:
    """A real HTTP origin (echo, bodies, WebSocket) for the edge tests of one module."""
    with HttpOrigin() as running:
        yield running


@pytest.fixture
def web(machine: Callable[[str], Machine], api: httpx.Client, origin: HttpOrigin) -> dict[str, Any]:
    """A public HTTP tunnel to `origin`, served by a real `portway expose`, once active."""
    name = f"web{os.urandom(3).hex()}"
    machine("server").start(
        "expose", f"127.0.0.1:{origin.port}", "--name", name, "--protocol", "http", "--public"
    ).wait_for("Connected to the hub.")

    def active() -> dict[str, Any] | None:
        found: dict[str, Any] = api.get(f"/v1/tunnels/{name}").json()
        return found if found["status"] == "active" else None

    found = wait_until(active, timeout=20, what=f"{name} to become active")
    assert found is not None
    return found


@pytest.fixture
async def echo() -> AsyncIterator[tuple[Echo, int]]:
    """An echo target on loopback, and its port."""
    target = Echo()
    server = await asyncio.start_server(target.serve, "127.0.0.1", 0)
    yield target, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[AgentPair]:
    """An in-process hub with an exposing and a reaching agent (`agent_pair`)."""
    async with start_pair(tmp_path) as started:
        yield started
