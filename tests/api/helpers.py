"""Assertions about the API's shared conventions."""

from __future__ import annotations

from typing import Any

import httpx


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is an error in the one Portway shape, with `status` (and `code`)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error  # type: ignore[no-any-return]


def error_fields(response: httpx.Response) -> set[str]:
    """The fields a 422 names in its details."""
    return {d["field"] for d in response.json()["error"]["details"]}
