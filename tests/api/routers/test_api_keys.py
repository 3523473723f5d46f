from __future__ import annotations

import uuid

import httpx
import pytest

from tests.api.helpers import assert_error, error_fields


async def test_create_shows_key_once(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/api-keys", json={"name": "ci pipeline"})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["key"].startswith("pw_") and len(created["key"]) == 46
    assert created["key"].startswith(created["prefix"])
    listed = (await api.get("/v1/api-keys")).json()["items"]
    entry = next(k for k in listed if k["id"] == created["id"])
    assert set(entry) == {"id", "name", "prefix", "createdAt", "lastUsedAt"}
    assert created["key"] not in str(listed)
    # The new key works on its own.
    me = await api.get("/v1/hub", headers={"Authorization": f"Bearer {created['key']}"})
    assert me.status_code == 200


@pytest.mark.parametrize(
    ("name", "status"),
    [("", 422), ("   ", 422), ("a", 201), ("x" * 100, 201), ("x" * 101, 422), ("tab\there", 422)],
)
async def test_name_bounds(api: httpx.AsyncClient, name: str, status: int) -> None:
    response = await api.post("/v1/api-keys", json={"name": name})
    assert response.status_code == status, response.text
    if status == 422:
        assert error_fields(response) == {"name"}


async def test_duplicate_name_conflicts(api: httpx.AsyncClient) -> None:
    assert (await api.post("/v1/api-keys", json={"name": "dup"})).status_code == 201
    assert_error(await api.post("/v1/api-keys", json={"name": "dup"}), 409, "api_key_name_taken")


async def test_revoke_takes_effect_at_once(api: httpx.AsyncClient) -> None:
    created = (await api.post("/v1/api-keys", json={"name": "temp"})).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert (await api.get("/v1/agents", headers=headers)).status_code == 200
    assert (await api.delete(f"/v1/api-keys/{created['id']}")).status_code == 204
    assert_error(await api.get("/v1/agents", headers=headers), 401, "invalid_api_key")
    ids = [k["id"] for k in (await api.get("/v1/api-keys")).json()["items"]]
    assert created["id"] not in ids
    # Revoking again is a 404: the key no longer exists as an active key.
    assert_error(await api.delete(f"/v1/api-keys/{created['id']}"), 404, "api_key_not_found")


async def test_revoke_unknown_or_malformed_id_is_404(api: httpx.AsyncClient) -> None:
    assert_error(await api.delete(f"/v1/api-keys/{uuid.uuid4()}"), 404, "api_key_not_found")
    assert_error(await api.delete("/v1/api-keys/not-a-uuid"), 404, "api_key_not_found")


async def test_last_key_cannot_be_revoked(other: httpx.AsyncClient) -> None:
    (only,) = (await other.get("/v1/api-keys")).json()["items"]
    assert_error(await other.delete(f"/v1/api-keys/{only['id']}"), 409, "last_api_key")


async def test_keys_are_workspace_scoped(api: httpx.AsyncClient, other: httpx.AsyncClient) -> None:
    mine = (await api.post("/v1/api-keys", json={"name": "mine"})).json()
    their_ids = {k["id"] for k in (await other.get("/v1/api-keys")).json()["items"]}
    assert mine["id"] not in their_ids
    assert_error(await other.delete(f"/v1/api-keys/{mine['id']}"), 404, "api_key_not_found")
    assert (await api.get("/v1/hub", headers={"Authorization": f"Bearer {mine['key']}"})).is_success


async def test_pagination_walks_every_key_once(api: httpx.AsyncClient) -> None:
    for i in range(7):
        assert (await api.post("/v1/api-keys", json={"name": f"k{i}"})).status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await api.get("/v1/api-keys", params=params)).json()
        assert len(page["items"]) <= 3
        seen += [k["name"] for k in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted([f"k{i}" for i in range(7)] + ["admin"])
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize("limit", [0, 201, -1])
async def test_limit_bounds(api: httpx.AsyncClient, limit: int) -> None:
    response = await api.get("/v1/api-keys", params={"limit": limit})
    assert_error(response, 422, "validation_failed")
    assert error_fields(response) == {"limit"}


async def test_limit_edges_accepted(api: httpx.AsyncClient) -> None:
    for limit in (1, 200):
        assert (await api.get("/v1/api-keys", params={"limit": limit})).status_code == 200


async def test_bad_cursor_is_422(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/api-keys", params={"cursor": "garbage!"})
    assert_error(response, 422)
    assert error_fields(response) == {"cursor"}
