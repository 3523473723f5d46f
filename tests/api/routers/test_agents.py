from __future__ import annotations

import uuid

import httpx
import pytest

from portway.api.context import ApiContext
from portway.hub.core.presence import AgentPresence
from tests.api.helpers import assert_error, error_fields


async def test_create_returns_token_once(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/agents", json={"name": "laptop", "label": "Ana's laptop"})
    assert response.status_code == 201, response.text
    agent = response.json()
    uuid.UUID(agent["id"])
    assert agent["token"].startswith("pwa_")
    assert agent["online"] is False and agent["sessions"] == 0
    shown = (await api.get(f"/v1/agents/{agent['id']}")).json()
    assert "token" not in shown
    assert shown["label"] == "Ana's laptop"
    assert set(shown) == {
        "id", "name", "label", "online", "sessions", "lastSeenAt", "version", "createdAt",
        "updatedAt",
    }  # fmt: skip


async def test_generated_name(api: httpx.AsyncClient) -> None:
    agent = (await api.post("/v1/agents", json={})).json()
    assert agent["name"].startswith("agent-") and len(agent["name"]) == 10


async def test_get_by_name_or_id(api: httpx.AsyncClient) -> None:
    agent = (await api.post("/v1/agents", json={"name": "build-box"})).json()
    assert (await api.get("/v1/agents/build-box")).json()["id"] == agent["id"]
    assert (await api.get(f"/v1/agents/{agent['id']}")).json()["name"] == "build-box"
    assert_error(await api.get("/v1/agents/missing"), 404, "agent_not_found")
    assert_error(await api.get(f"/v1/agents/{uuid.uuid4()}"), 404, "agent_not_found")


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("x" * 100, True),
        ("x" * 101, False),
        ("", False),
        ("-leading-dash", False),
        ("has space", False),
        ("dots.and_under-scores", True),
    ],
)
async def test_name_rules(api: httpx.AsyncClient, name: str, ok: bool) -> None:
    response = await api.post("/v1/agents", json={"name": name})
    assert response.status_code == (201 if ok else 422), response.text
    if not ok:
        assert error_fields(response) == {"name"}


async def test_label_bounds(api: httpx.AsyncClient) -> None:
    assert (await api.post("/v1/agents", json={"label": "l" * 200})).status_code == 201
    assert_error(await api.post("/v1/agents", json={"label": "l" * 201}), 422)


async def test_duplicate_name_conflicts(api: httpx.AsyncClient) -> None:
    assert (await api.post("/v1/agents", json={"name": "same"})).status_code == 201
    assert_error(await api.post("/v1/agents", json={"name": "same"}), 409, "agent_name_taken")


async def test_same_name_in_two_workspaces_is_fine(
    api: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    assert (await api.post("/v1/agents", json={"name": "shared"})).status_code == 201
    assert (await other.post("/v1/agents", json={"name": "shared"})).status_code == 201


async def test_patch_renames_relabels_and_clears(api: httpx.AsyncClient) -> None:
    agent = (await api.post("/v1/agents", json={"name": "old", "label": "x"})).json()
    renamed = await api.patch(f"/v1/agents/{agent['id']}", json={"name": "new"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "new" and renamed.json()["label"] == "x"
    cleared = (await api.patch("/v1/agents/new", json={"label": None})).json()
    assert cleared["label"] is None
    (await api.post("/v1/agents", json={"name": "taken"})).json()
    assert_error(await api.patch("/v1/agents/new", json={"name": "taken"}), 409)
    assert_error(await api.patch("/v1/agents/new", json={"name": "bad name"}), 422)
    assert_error(await api.patch("/v1/agents/new", json={"online": True}), 422)


async def test_rotate_token(api: httpx.AsyncClient) -> None:
    agent = (await api.post("/v1/agents", json={"name": "rot"})).json()
    rotated = await api.post(f"/v1/agents/{agent['id']}/rotate-token")
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["id"] == agent["id"]
    assert body["token"].startswith("pwa_") and body["token"] != agent["token"]


async def test_rotation_and_deletion_invalidate_tokens(
    api: httpx.AsyncClient, ctx: ApiContext
) -> None:
    from portway.store import agents as agent_store

    agent = (await api.post("/v1/agents", json={"name": "tok"})).json()
    async with ctx.db.session() as session:
        assert (await agent_store.authenticate(session, agent["token"])) is not None
    new = (await api.post(f"/v1/agents/{agent['id']}/rotate-token")).json()["token"]
    async with ctx.db.session() as session:
        assert await agent_store.authenticate(session, agent["token"]) is None
        assert await agent_store.authenticate(session, new) is not None
    assert (await api.delete(f"/v1/agents/{agent['id']}")).status_code == 204
    async with ctx.db.session() as session:
        assert await agent_store.authenticate(session, new) is None
    assert_error(await api.get(f"/v1/agents/{agent['id']}"), 404)


async def test_online_reflects_live_sessions(
    api: httpx.AsyncClient, presence: AgentPresence
) -> None:
    agent = (await api.post("/v1/agents", json={"name": "live"})).json()
    agent_id, s1, s2 = uuid.UUID(agent["id"]), uuid.uuid4(), uuid.uuid4()
    presence.add(agent_id, s1)
    presence.add(agent_id, s2)
    shown = (await api.get("/v1/agents/live")).json()
    assert shown["online"] is True and shown["sessions"] == 2
    presence.remove(agent_id, s1)
    presence.remove(agent_id, s2)
    assert (await api.get("/v1/agents/live")).json()["online"] is False


async def test_cross_workspace_isolation(api: httpx.AsyncClient, other: httpx.AsyncClient) -> None:
    agent = (await api.post("/v1/agents", json={"name": "private"})).json()
    for ref in (agent["id"], "private"):
        assert_error(await other.get(f"/v1/agents/{ref}"), 404, "agent_not_found")
        assert_error(await other.patch(f"/v1/agents/{ref}", json={"label": "x"}), 404)
        assert_error(await other.delete(f"/v1/agents/{ref}"), 404)
        assert_error(await other.post(f"/v1/agents/{ref}/rotate-token"), 404)
    assert (await other.get("/v1/agents")).json()["items"] == []
    assert (await api.get(f"/v1/agents/{agent['id']}")).json()["label"] is None


async def test_list_newest_first(api: httpx.AsyncClient) -> None:
    from portway.domain.clock import FrozenClock

    clock = api._transport.app.state.ctx.clock  # type: ignore[attr-defined]
    assert isinstance(clock, FrozenClock)
    for name in ("first", "second", "third"):
        await api.post("/v1/agents", json={"name": name})
        clock.advance(seconds=1)
    names = [a["name"] for a in (await api.get("/v1/agents")).json()["items"]]
    assert names == ["third", "second", "first"]
