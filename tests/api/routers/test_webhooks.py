"""`/v1/webhooks`: CRUD, secrets shown once, the SSRF guard, test deliveries, isolation."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from portway.api.context import ApiContext
from portway.hub import egress
from tests.api.helpers import assert_error, error_fields

PUBLIC_URL = "https://93.184.215.14/hooks/portway"


def allow_private(ctx: ApiContext, allowed: bool = True) -> None:
    """Run the in-process API as a hub started with(out) --webhooks-allow-private."""
    ctx.url_guard = egress.Guard(allowed)


async def new_webhook(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await api.post("/v1/webhooks", json={"url": PUBLIC_URL, **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_create_shows_the_secret_once(api: httpx.AsyncClient) -> None:
    created = await new_webhook(
        api, events=["tunnel.created", "tunnel.expired"], description="CI bookkeeping"
    )
    assert created["secret"].startswith("whsec_")
    assert created["secretPrefix"] == created["secret"][:14]
    assert created["events"] == ["tunnel.created", "tunnel.expired"]
    assert created["enabled"] is True and created["disabledReason"] is None
    assert created["failingSince"] is None and created["description"] == "CI bookkeeping"
    shown = (await api.get(f"/v1/webhooks/{created['id']}")).json()
    assert "secret" not in shown
    assert shown == {k: v for k, v in created.items() if k != "secret"}
    listing = await api.get("/v1/webhooks")
    assert listing.status_code == 200
    assert created["secret"] not in listing.text
    assert [w["id"] for w in listing.json()["items"]] == [created["id"]]
    assert (await new_webhook(api))["events"] == ["*"]


async def test_update_and_delete(api: httpx.AsyncClient) -> None:
    hook = await new_webhook(api, description="old")
    patched = await api.patch(
        f"/v1/webhooks/{hook['id']}",
        json={"events": ["share.expired", "*"], "enabled": False, "description": None},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["events"] == ["*"] and body["enabled"] is False and body["description"] is None
    assert body["disabledReason"] is None  # a user switched it off, not the hub
    moved = await api.patch(f"/v1/webhooks/{hook['id']}", json={"url": "https://8.8.8.8/x"})
    assert moved.json()["url"] == "https://8.8.8.8/x"
    assert (await api.delete(f"/v1/webhooks/{hook['id']}")).status_code == 204
    assert_error(await api.get(f"/v1/webhooks/{hook['id']}"), 404, "webhook_not_found")
    assert_error(await api.delete(f"/v1/webhooks/{hook['id']}"), 404, "webhook_not_found")
    assert_error(await api.get("/v1/webhooks/not-a-uuid"), 404, "webhook_not_found")


async def test_rotate_secret(api: httpx.AsyncClient) -> None:
    hook = await new_webhook(api)
    rotated = await api.post(f"/v1/webhooks/{hook['id']}/rotate-secret")
    assert rotated.status_code == 200
    secret = rotated.json()["secret"]
    assert rotated.json()["id"] == hook["id"]
    assert secret.startswith("whsec_") and secret != hook["secret"]
    shown = (await api.get(f"/v1/webhooks/{hook['id']}")).json()
    assert shown["secretPrefix"] == secret[:14]


async def test_test_delivery_is_queued_and_reported(api: httpx.AsyncClient) -> None:
    hook = await new_webhook(api, events=["tunnel.deleted"])
    queued = await api.post(f"/v1/webhooks/{hook['id']}/test")
    assert queued.status_code == 202, queued.text
    delivery = queued.json()
    assert delivery["eventType"] == "webhook.test" and delivery["status"] == "pending"
    assert delivery["eventSeq"] is None and delivery["attempts"] == []
    listed = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()
    assert [d["id"] for d in listed["items"]] == [delivery["id"]]
    pending = await api.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"status": "failed"})
    assert pending.json()["items"] == []
    await api.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": False})
    assert_error(await api.post(f"/v1/webhooks/{hook['id']}/test"), 409, "webhook_disabled")


async def test_deliveries_page_newest_first(api: httpx.AsyncClient) -> None:
    hook = await new_webhook(api)
    ids = [(await api.post(f"/v1/webhooks/{hook['id']}/test")).json()["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries", params=params)).json()
        seen += [d["id"] for d in page["items"]]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert seen == ids[::-1]
    bad = await api.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"cursor": "zzz"})
    assert error_fields(bad) == {"cursor"}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.0.0.5/hook",
        "http://192.168.1.20/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00::1]/hook",
        "http://224.0.0.251/hook",
        "http://0.0.0.0/hook",
    ],
)
async def test_private_urls_are_refused(api: httpx.AsyncClient, url: str) -> None:
    refused = await api.post("/v1/webhooks", json={"url": url})
    error = assert_error(refused, 422, "url_not_allowed")
    assert error_fields(refused) == {"url"}
    assert "--webhooks-allow-private" in error["message"]
    hook = await new_webhook(api)
    moved = await api.patch(f"/v1/webhooks/{hook['id']}", json={"url": url})
    assert_error(moved, 422, "url_not_allowed")
    assert (await api.get(f"/v1/webhooks/{hook['id']}")).json()["url"] == PUBLIC_URL


async def test_private_urls_are_accepted_with_the_flag(
    api: httpx.AsyncClient, ctx: ApiContext
) -> None:
    allow_private(ctx)
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.0.0.5/"):
        assert (await api.post("/v1/webhooks", json={"url": url})).status_code == 201


async def test_unresolvable_host_is_refused(api: httpx.AsyncClient) -> None:
    refused = await api.post("/v1/webhooks", json={"url": "https://hooks.invalid/x"})
    assert_error(refused, 422, "url_unresolvable")
    assert error_fields(refused) == {"url"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/"}, "url"),
        ({"url": ""}, "url"),
        ({"url": "https://example.com/" + "a" * 2030}, "url"),
        ({"url": PUBLIC_URL, "events": []}, "events"),
        ({"url": PUBLIC_URL, "events": ["tunnel.exploded"]}, "events"),
        ({"url": PUBLIC_URL, "events": "*"}, "events"),
        ({"url": PUBLIC_URL, "description": "x" * 501}, "description"),
        ({"url": PUBLIC_URL, "description": "nul\x00"}, "description"),
        ({"url": PUBLIC_URL, "enabled": "yes"}, "enabled"),
        ({"url": PUBLIC_URL, "secret": "whsec_mine"}, "secret"),
    ],
)
async def test_fields_are_validated(
    api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await api.post("/v1/webhooks", json=body)
    assert_error(response, 422)
    assert error_fields(response) == {field}


async def test_description_edge(api: httpx.AsyncClient) -> None:
    assert (await new_webhook(api, description="x" * 500))["description"] == "x" * 500


async def test_webhooks_are_workspace_scoped(
    api: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    hook = await new_webhook(api)
    for method, path in (
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/test"),
        ("POST", "/rotate-secret"),
        ("GET", "/deliveries"),
    ):
        kwargs: dict[str, Any] = {"json": {"enabled": False}} if method == "PATCH" else {}
        response = await other.request(method, f"/v1/webhooks/{hook['id']}{path}", **kwargs)
        assert_error(response, 404, "webhook_not_found")
    assert (await other.get("/v1/webhooks")).json()["items"] == []
    assert_error(await other.get(f"/v1/webhooks/{uuid.uuid4()}"), 404, "webhook_not_found")
