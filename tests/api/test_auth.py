from __future__ import annotations

import httpx

from portway.domain.clock import FrozenClock
from tests.api.helpers import assert_error


async def test_missing_key_is_401_with_hint(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/agents", headers={"Authorization": ""})
    error = assert_error(response, 401, "missing_api_key")
    assert "Bearer" in error["message"]
    assert response.headers["www-authenticate"] == "Bearer"


async def test_wrong_key_is_401(api: httpx.AsyncClient) -> None:
    for bad in ("pw_not-a-real-key", "something-else", "pw_" + "x" * 500):
        response = await api.get("/v1/agents", headers={"Authorization": f"Bearer {bad}"})
        assert_error(response, 401, "invalid_api_key")


async def test_non_bearer_scheme_is_401(api: httpx.AsyncClient, admin_key: str) -> None:
    response = await api.get("/v1/agents", headers={"Authorization": f"Basic {admin_key}"})
    assert_error(response, 401)


async def test_x_api_key_header_works(api: httpx.AsyncClient, admin_key: str) -> None:
    response = await api.get("/v1/agents", headers={"Authorization": "", "X-API-Key": admin_key})
    assert response.status_code == 200, response.text


async def test_public_endpoints_need_no_key(api: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/openapi.json", "/docs"):
        response = await api.get(path, headers={"Authorization": ""})
        assert response.status_code == 200, path


async def test_last_used_is_recorded(api: httpx.AsyncClient, clock: FrozenClock) -> None:
    created = (await api.post("/v1/api-keys", json={"name": "ci"})).json()
    assert created["lastUsedAt"] is None
    clock.advance(minutes=5)
    await api.get("/v1/agents", headers={"Authorization": f"Bearer {created['key']}"})
    keys = (await api.get("/v1/api-keys")).json()["items"]
    used = next(k for k in keys if k["id"] == created["id"])
    assert used["lastUsedAt"] == clock.now().isoformat().replace("+00:00", "Z")


async def test_hub_info_names_the_callers_workspace(
    api: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    mine = (await api.get("/v1/hub")).json()
    theirs = (await other.get("/v1/hub")).json()
    assert mine["workspace"]["isAdmin"] is True
    assert theirs["workspace"]["isAdmin"] is False
    assert mine["workspace"]["id"] != theirs["workspace"]["id"]
    assert mine["publicDomain"] == "localhost"
