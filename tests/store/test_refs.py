"""`store.refs.by_ref`: agents and tunnels by id or name, scoped to the workspace."""

from __future__ import annotations

import uuid

import httpx
import pytest

from portway.api.context import ApiContext
from portway.store import agents, tunnels
from portway.store.errors import NoSuchRow
from tests.api.tunnel_helpers import new_agent, new_tunnel


async def _workspace(client: httpx.AsyncClient) -> uuid.UUID:
    return uuid.UUID((await client.get("/v1/hub")).json()["workspace"]["id"])


async def test_by_id_or_name_in_the_workspace_only(
    api: httpx.AsyncClient, other: httpx.AsyncClient, ctx: ApiContext
) -> None:
    agent = await new_agent(api, "laptop")
    tunnel = await new_tunnel(api, agent, name="db")
    mine, theirs = await _workspace(api), await _workspace(other)
    async with ctx.db.session() as session:
        assert (await agents.get(session, mine, agent)).name == "laptop"
        assert str((await agents.get(session, mine, "laptop")).id) == agent
        assert (await tunnels.get(session, mine, tunnel["id"])).name == "db"
        assert str((await tunnels.get(session, mine, "db")).id) == tunnel["id"]
        for ref in ("db-but-not", str(uuid.uuid4()), "a\x00b", tunnel["id"][:-1]):
            with pytest.raises(NoSuchRow) as missing:
                await tunnels.get(session, mine, ref)
            assert (missing.value.code, str(missing.value)) == (
                "tunnel_not_found",
                "tunnel not found",
            )
        for ref in (agent, "laptop"):
            with pytest.raises(NoSuchRow, match="agent not found"):
                await agents.get(session, theirs, ref)
        with pytest.raises(NoSuchRow) as named:
            await agents.get(session, mine, str(uuid.uuid4()), field="agentId")
    assert named.value.code == "agent_not_found" and named.value.field == "agentId"
    assert named.value.details == [
        {"field": "agentId", "message": "agent not found", "type": "not_found"}
    ]
