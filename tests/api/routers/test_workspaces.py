from __future__ import annotations

import uuid

import httpx

from tests.api.helpers import assert_error


async def test_admin_creates_lists_and_deletes(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/workspaces", json={"name": "team-a"})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["apiKey"].startswith("pw_")
    assert created["isAdmin"] is False
    names = {w["name"] for w in (await api.get("/v1/workspaces")).json()["items"]}
    assert names == {"default", "team-a"}
    key = {"Authorization": f"Bearer {created['apiKey']}"}
    assert (await api.get("/v1/agents", headers=key)).status_code == 200
    assert (await api.delete(f"/v1/workspaces/{created['id']}")).status_code == 204
    # Deleting a workspace deletes its keys with it.
    assert_error(await api.get("/v1/agents", headers=key), 401, "invalid_api_key")
    assert_error(await api.delete(f"/v1/workspaces/{created['id']}"), 404, "workspace_not_found")


async def test_deleting_a_workspace_removes_what_it_owns(api: httpx.AsyncClient) -> None:
    created = (await api.post("/v1/workspaces", json={"name": "doomed"})).json()
    key = {"Authorization": f"Bearer {created['apiKey']}"}
    agent = (await api.post("/v1/agents", json={"name": "a1"}, headers=key)).json()
    assert (await api.delete(f"/v1/workspaces/{created['id']}")).status_code == 204
    again = (await api.post("/v1/workspaces", json={"name": "doomed"})).json()
    key = {"Authorization": f"Bearer {again['apiKey']}"}
    assert_error(await api.get(f"/v1/agents/{agent['id']}", headers=key), 404)
    assert (await api.get("/v1/agents", headers=key)).json()["items"] == []


async def test_non_admin_gets_403(other: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    target = (await api.post("/v1/workspaces", json={"name": "target"})).json()
    assert_error(await other.get("/v1/workspaces"), 403, "admin_only")
    assert_error(await other.post("/v1/workspaces", json={"name": "x"}), 403, "admin_only")
    assert_error(await other.delete(f"/v1/workspaces/{target['id']}"), 403, "admin_only")


async def test_admin_workspace_cannot_be_deleted(api: httpx.AsyncClient) -> None:
    me = (await api.get("/v1/hub")).json()["workspace"]
    assert_error(await api.delete(f"/v1/workspaces/{me['id']}"), 409, "admin_workspace")


async def test_duplicate_and_invalid_names(api: httpx.AsyncClient) -> None:
    assert (await api.post("/v1/workspaces", json={"name": "w" * 100})).status_code == 201
    assert_error(await api.post("/v1/workspaces", json={"name": "w" * 100}), 409)
    assert_error(await api.post("/v1/workspaces", json={"name": "w" * 101}), 422)
    assert_error(await api.post("/v1/workspaces", json={}), 422)
    assert_error(await api.delete(f"/v1/workspaces/{uuid.uuid4()}"), 404)
    assert_error(await api.delete("/v1/workspaces/nope"), 404)
