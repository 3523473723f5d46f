"""Every failure, however it arises, has the one error shape and a meaningful status."""

from __future__ import annotations

import httpx

from tests.api.helpers import assert_error, error_fields


async def test_unknown_route(api: httpx.AsyncClient) -> None:
    assert_error(await api.get("/v1/nothing-here"), 404, "not_found")


async def test_wrong_method(api: httpx.AsyncClient) -> None:
    assert_error(await api.put("/v1/agents"), 405, "method_not_allowed")


async def test_malformed_json_is_400(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/agents", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")


async def test_non_object_body_is_422(api: httpx.AsyncClient) -> None:
    for body in ("[]", '"text"', "42", "null"):
        response = await api.post(
            "/v1/api-keys", content=body.encode(), headers={"content-type": "application/json"}
        )
        assert response.status_code in (400, 422), (body, response.text)
        assert_error(response, response.status_code)


async def test_unknown_field_is_rejected_by_name(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/api-keys", json={"name": "k", "scopes": ["all"]})
    assert_error(response, 422, "validation_failed")
    assert error_fields(response) == {"scopes"}


async def test_wrong_type_names_field(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/agents", json={"name": 12})
    assert_error(response, 422)
    assert error_fields(response) == {"name"}


async def test_binary_garbage(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/agents", content=b"\xff\xfe\x00garbage", headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert_error(response, response.status_code)
