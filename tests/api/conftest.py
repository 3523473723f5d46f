"""Fixtures for the API tests."""

from __future__ import annotations

import httpx
import pytest

from tests.api.tunnel_helpers import new_agent


@pytest.fixture
async def agent(api: httpx.AsyncClient) -> str:
    """The id of an agent of the admin workspace, to expose tunnels with."""
    return await new_agent(api, "exposer")
