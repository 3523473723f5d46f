"""Fixtures of the CLI tests: a real hub on loopback, an API client for it, a logged-in profile.

Plain helpers (running the CLI, creating agents and tunnels) are in `tests/cli/helpers.py`.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from portway.testing.hub import HubThread
from tests.cli.helpers import run


@pytest.fixture(scope="module")
def hub_flags() -> dict[str, str]:
    """Settings of the module's hub beyond fresh ports and data; a module overrides this."""
    return {}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, hub_flags: dict[str, str]) -> Iterator[HubThread]:
    """One in-process hub per test module."""
    with HubThread(tmp_path_factory.mktemp("cli") / "hub", **hub_flags) as running:
        yield running


@pytest.fixture
def api(hub: HubThread) -> Iterator[httpx.Client]:
    """The hub's REST API, authenticated as the admin workspace."""
    headers = {"Authorization": f"Bearer {hub.admin_key}"}
    with httpx.Client(base_url=hub.api_url, headers=headers) as client:
        yield client


@pytest.fixture
def logged_in(hub: HubThread) -> None:
    """The test's (isolated) default profile is logged in to `hub` with the admin key."""
    run("login", "--hub", hub.api_url, "--api-key", hub.admin_key)
