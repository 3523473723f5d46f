"""Real hub and agent processes on loopback, for end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from portway.testing.hub import HubProcess
from portway.testing.machines import Machine


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
