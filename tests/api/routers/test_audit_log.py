"""The audit log: every mutating call, successful or refused, with who, what, where, outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from portway.api.app import create_app
from portway.api.context import ApiContext
from portway.store import audit, tunnels
from tests.api.helpers import assert_error
from tests.api.tunnel_helpers import new_agent, new_tunnel


async def entries(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The caller's audit log, oldest first."""
    response = await client.get("/v1/audit-log", params={"limit": 200})
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["items"]))


async def key_id(client: httpx.AsyncClient) -> str:
    [key] = (await client.get("/v1/api-keys")).json()["items"]
    return str(key["id"])


async def test_mutations_are_recorded_with_their_outcome(api: httpx.AsyncClient) -> None:
    agent = await new_agent(api, "auditor")
    tunnel = await new_tunnel(api, agent, name="db")
    await api.get(f"/v1/tunnels/{tunnel['id']}")  # reads are not audited
    assert (await api.post("/v1/tunnels", json={"target": "x"})).status_code == 422
    assert (await api.patch("/v1/tunnels/db", json={"status": "paused"})).status_code == 200
    dup = await api.post("/v1/tunnels", json={"target": "h:1", "agentId": agent, "name": "db"})
    assert dup.status_code == 409
    assert (await api.delete("/v1/tunnels/nope")).status_code == 404
    assert (await api.delete("/v1/tunnels/db")).status_code == 204
    refused = await api.post("/v1/webhooks", json={"url": "http://127.0.0.1/"})
    assert refused.status_code == 422

    got = await entries(api)
    assert [(e["method"], e["route"], e["statusCode"], e["objectId"]) for e in got] == [
        ("POST", "/v1/agents", 201, agent),
        ("POST", "/v1/tunnels", 201, tunnel["id"]),
        ("POST", "/v1/tunnels", 422, None),
        ("PATCH", "/v1/tunnels/{tunnel_ref}", 200, tunnel["id"]),
        ("POST", "/v1/tunnels", 409, None),
        ("DELETE", "/v1/tunnels/{tunnel_ref}", 404, "nope"),
        ("DELETE", "/v1/tunnels/{tunnel_ref}", 204, "db"),
        ("POST", "/v1/webhooks", 422, None),
    ]
    assert [e["path"] for e in got][-3:] == ["/v1/tunnels/nope", "/v1/tunnels/db", "/v1/webhooks"]
    me = await key_id(api)
    assert {(e["actorType"], e["actorId"]) for e in got} == {("api_key", me)}
    assert {e["clientAddress"] for e in got} == {"127.0.0.1"}
    assert all(e["at"] for e in got)


async def test_audit_log_is_workspace_scoped(
    api: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    await new_agent(other, "theirs")
    theirs = await entries(other)
    assert [(e["route"], e["statusCode"]) for e in theirs] == [("/v1/agents", 201)]
    assert theirs[0]["actorId"] == await key_id(other)
    # The admin workspace sees its own calls (creating the other workspace), never theirs.
    mine = await entries(api)
    assert [(e["route"], e["statusCode"]) for e in mine] == [("/v1/workspaces", 201)]


async def test_calls_without_a_valid_key_are_not_in_any_workspace_log(
    api: httpx.AsyncClient,
) -> None:
    refused = await api.post("/v1/agents", json={}, headers={"Authorization": "Bearer pw_nope"})
    assert_error(refused, 401, "invalid_api_key")
    assert await entries(api) == []


async def test_paging(api: httpx.AsyncClient) -> None:
    for i in range(5):
        await new_agent(api, f"a{i}")
    first = (await api.get("/v1/audit-log", params={"limit": 3})).json()
    assert len(first["items"]) == 3 and first["nextCursor"]
    rest = (await api.get("/v1/audit-log", params={"cursor": first["nextCursor"]})).json()
    assert len(rest["items"]) == 2 and rest["nextCursor"] is None
    assert_error(await api.get("/v1/audit-log", params={"cursor": "bad"}), 422)


async def test_a_failing_audit_store_changes_no_response(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("audit store is down")

    monkeypatch.setattr(audit, "record", broken)
    created = await api.post("/v1/agents", json={"name": "still-works"})
    assert created.status_code == 201
    assert created.json()["name"] == "still-works"


@pytest.fixture
async def lenient(ctx: ApiContext, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """The in-process API, answering unexpected errors with a 500 instead of raising them."""
    transport = httpx.ASGITransport(app=create_app(ctx), raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://hub.test",
        headers={"Authorization": f"Bearer {admin_key}"},
    ) as client:
        yield client


async def test_an_unexpected_error_is_audited_as_500(
    lenient: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await new_agent(lenient)
    tunnel = await new_tunnel(lenient, agent)

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("store exploded")

    monkeypatch.setattr(tunnels, "delete", broken)
    failed = await lenient.delete(f"/v1/tunnels/{tunnel['id']}")
    assert_error(failed, 500, "internal_error")
    last = (await entries(lenient))[-1]
    assert (last["method"], last["statusCode"], last["objectId"]) == (
        "DELETE",
        500,
        tunnel["id"],
    )
