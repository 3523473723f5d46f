"""Shares: creation bounds, token handling, status, revocation, listings and access logs."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from portway.api.context import ApiContext
from portway.domain import secrets
from portway.domain.clock import FrozenClock
from portway.store import shares
from portway.store.models import Share
from tests.api.helpers import assert_error, error_fields
from tests.api.tunnel_helpers import events, new_agent, new_share, new_tunnel

SHARE_FIELDS = {
    "id", "tunnelId", "name", "description", "tokenPrefix", "status", "expiresAt",
    "allowedMethods", "allowedPaths", "rateLimit", "createdAt", "revokedAt", "accessCount",
    "lastAccessedAt",
}  # fmt: skip


@pytest.fixture
async def web(api: httpx.AsyncClient) -> dict[str, Any]:
    """An HTTP tunnel."""
    return await new_tunnel(api, await new_agent(api, "web-agent"), target="localhost:3000")


@pytest.fixture
async def db_tunnel(api: httpx.AsyncClient) -> dict[str, Any]:
    """A TCP tunnel."""
    return await new_tunnel(api, await new_agent(api, "db-agent"), name="db")


async def _create(api: httpx.AsyncClient, tunnel: dict[str, Any], **fields: Any) -> httpx.Response:
    return await api.post(f"/v1/tunnels/{tunnel['id']}/shares", json={"name": "s", **fields})


async def test_create_http_share(
    api: httpx.AsyncClient, web: dict[str, Any], ctx: ApiContext
) -> None:
    share = await new_share(api, web["id"], name="Partner preview")
    assert set(share) == SHARE_FIELDS | {"token", "shareUrl"}
    assert share["token"].startswith("pws_") and len(share["token"]) == 4 + 43
    assert share["tokenPrefix"] == share["token"][:12]
    edge = ctx.config.edge_listen.port
    assert share["shareUrl"] == f"http://localhost:{edge}/s/{share['token']}/"
    assert share["status"] == "active" and share["expiresAt"] == "2026-01-02T00:00:00Z"
    assert share["allowedMethods"] is None and share["allowedPaths"] is None
    assert share["rateLimit"] is None and share["description"] is None
    assert share["accessCount"] == 0 and share["lastAccessedAt"] is None
    assert share["revokedAt"] is None and share["tunnelId"] == web["id"]
    shown = (await api.get(f"/v1/shares/{share['id']}")).json()
    assert set(shown) == SHARE_FIELDS
    assert shown == {k: v for k, v in share.items() if k not in ("token", "shareUrl")}


async def test_tcp_share_url_is_a_join_link(
    api: httpx.AsyncClient, db_tunnel: dict[str, Any], ctx: ApiContext
) -> None:
    share = await new_share(api, "db")
    assert share["shareUrl"] == f"{ctx.config.api_url}/v1/join/{share['token']}"


async def test_token_is_stored_only_as_a_hash(
    api: httpx.AsyncClient, web: dict[str, Any], ctx: ApiContext
) -> None:
    share = await new_share(api, web["id"])
    async with ctx.db.session() as session:
        row = await session.scalar(select(Share).where(Share.id == uuid.UUID(share["id"])))
        assert row is not None
        assert row.token_hash == secrets.digest(share["token"])
        stored = [str(getattr(row, c.key)) for c in Share.__table__.columns]
        assert not any(share["token"] in value for value in stored)
        found = await shares.authenticate(session, share["token"], now=ctx.clock.now())
        assert found is not None and str(found[0].id) == share["id"]
        assert await shares.authenticate(session, share["token"] + "x", now=ctx.clock.now()) is None
        assert (
            await shares.authenticate(session, "pw_" + share["token"], now=ctx.clock.now()) is None
        )
    listed = (await api.get(f"/v1/tunnels/{web['id']}/shares")).text
    assert share["token"] not in listed


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"name": "n"}, True),
        ({"name": "n" * 100}, True),
        ({"name": "n" * 101}, False),
        ({"name": ""}, False),
        ({"name": "   "}, False),
        ({"name": "tab\there"}, False),
        ({"description": "d" * 500}, True),
        ({"description": "d" * 501}, False),
        ({"description": "line one\nline two"}, True),
        ({"description": "nul\x00byte"}, False),
        ({"rateLimit": 1}, True),
        ({"rateLimit": 1000}, True),
        ({"rateLimit": 0}, False),
        ({"rateLimit": 1001}, False),
        ({"rateLimit": "10"}, False),
        ({"allowedPaths": ["/"]}, True),
        ({"allowedPaths": ["/" + "p" * 1023]}, True),
        ({"allowedPaths": ["/" + "p" * 1024]}, False),
        ({"allowedPaths": [f"/p{i}" for i in range(50)]}, True),
        ({"allowedPaths": [f"/p{i}" for i in range(51)]}, False),
        ({"allowedPaths": []}, False),
        ({"allowedPaths": ["api"]}, False),
        ({"allowedPaths": [""]}, False),
        ({"allowedPaths": ["/a b"]}, False),
        ({"allowedPaths": ["/a?b=1"]}, False),
        ({"allowedPaths": ["/a#frag"]}, False),
        ({"allowedPaths": ["/a/../b"]}, False),
        ({"allowedMethods": ["GET"]}, True),
        ({"allowedMethods": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]}, True),
        ({"allowedMethods": []}, False),
        ({"allowedMethods": ["TRACE"]}, False),
        ({"allowedMethods": ["CONNECT"]}, False),
        ({"allowedMethods": ["GET", 1]}, False),
    ],
)
async def test_field_bounds(
    api: httpx.AsyncClient, web: dict[str, Any], fields: dict[str, Any], ok: bool
) -> None:
    response = await _create(api, web, **fields)
    if ok:
        assert response.status_code == 201, response.text
        for key, value in fields.items():
            assert response.json()[key] == value
    else:
        assert_error(response, 422)
        assert {f.split(".")[0] for f in error_fields(response)} == set(fields)


async def test_methods_and_paths_are_normalised(
    api: httpx.AsyncClient, web: dict[str, Any]
) -> None:
    share = await new_share(
        api,
        web["id"],
        allowedMethods=["get", "Post", "GET", " head "],
        allowedPaths=["/api/", "/health", "/api/"],
    )
    assert share["allowedMethods"] == ["GET", "POST", "HEAD"]
    assert share["allowedPaths"] == ["/api/", "/health"]


@pytest.mark.parametrize("field", ["allowedMethods", "allowedPaths"])
async def test_http_policy_refused_on_tcp_tunnels(
    api: httpx.AsyncClient, db_tunnel: dict[str, Any], field: str
) -> None:
    value = ["GET"] if field == "allowedMethods" else ["/api"]
    response = await _create(api, db_tunnel, **{field: value})
    error = assert_error(response, 422)
    assert error_fields(response) == {field} and "HTTP" in error["message"]
    # The rate limit applies to any tunnel (new connections per minute for TCP/UDP).
    assert (await _create(api, db_tunnel, rateLimit=5)).status_code == 201


@pytest.mark.parametrize(
    ("expires_in", "delta"),
    [
        ("1h", timedelta(hours=1)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("30d", timedelta(days=30)),
        ("never", None),
    ],
)
async def test_expires_in(
    api: httpx.AsyncClient,
    web: dict[str, Any],
    clock: FrozenClock,
    expires_in: str,
    delta: timedelta | None,
) -> None:
    share = await new_share(api, web["id"], expiresIn=expires_in)
    expected = None if delta is None else (clock.now() + delta).isoformat().replace("+00:00", "Z")
    assert share["expiresAt"] == expected


@pytest.mark.parametrize("expires_in", ["2h", 3600, "", None, "24H"])
async def test_expires_in_refused(
    api: httpx.AsyncClient, web: dict[str, Any], expires_in: object
) -> None:
    response = await _create(api, web, expiresIn=expires_in)
    assert_error(response, 422)
    assert error_fields(response) == {"expiresIn"}


async def test_status_follows_the_clock(
    api: httpx.AsyncClient, web: dict[str, Any], clock: FrozenClock, ctx: ApiContext
) -> None:
    share = await new_share(api, web["id"], expiresIn="1h")
    forever = await new_share(api, web["id"], expiresIn="never")
    clock.advance(minutes=59, seconds=59)
    assert (await api.get(f"/v1/shares/{share['id']}")).json()["status"] == "active"
    clock.advance(seconds=1)
    assert (await api.get(f"/v1/shares/{share['id']}")).json()["status"] == "expired"
    assert (await api.get(f"/v1/shares/{forever['id']}")).json()["status"] == "active"
    async with ctx.db.session() as session:
        assert await shares.authenticate(session, share["token"], now=clock.now()) is None
        assert await shares.authenticate(session, forever["token"], now=clock.now()) is not None


async def test_revoke_is_idempotent(
    api: httpx.AsyncClient, web: dict[str, Any], clock: FrozenClock, ctx: ApiContext
) -> None:
    share = await new_share(api, web["id"])
    clock.advance(minutes=1)
    assert (await api.delete(f"/v1/shares/{share['id']}")).status_code == 204
    revoked = (await api.get(f"/v1/shares/{share['id']}")).json()
    assert revoked["status"] == "revoked" and revoked["revokedAt"] == "2026-01-01T00:01:00Z"
    clock.advance(minutes=1)
    assert (await api.delete(f"/v1/shares/{share['id']}")).status_code == 204
    again = (await api.get(f"/v1/shares/{share['id']}")).json()
    assert again["revokedAt"] == "2026-01-01T00:01:00Z"
    [event] = await events(ctx, "share.revoked")
    assert event.object_id == share["id"] and event.payload["reason"] == "revoked"
    async with ctx.db.session() as session:
        assert await shares.authenticate(session, share["token"], now=clock.now()) is None
    # Expired shares can still be revoked; revoked wins in the status.
    old = await new_share(api, web["id"], expiresIn="1h")
    clock.advance(hours=2)
    assert (await api.delete(f"/v1/shares/{old['id']}")).status_code == 204
    assert (await api.get(f"/v1/shares/{old['id']}")).json()["status"] == "revoked"


async def test_unknown_and_malformed_share_ids(api: httpx.AsyncClient) -> None:
    for ref in (str(uuid.uuid4()), "not-a-uuid", "%00"):
        assert_error(await api.get(f"/v1/shares/{ref}"), 404, "share_not_found")
        assert_error(await api.delete(f"/v1/shares/{ref}"), 404, "share_not_found")
        assert_error(await api.get(f"/v1/shares/{ref}/access-logs"), 404, "share_not_found")
    for ref in (str(uuid.uuid4()), "nope"):
        assert_error(await _create(api, {"id": ref}), 404, "tunnel_not_found")
        assert_error(await api.get(f"/v1/tunnels/{ref}/shares"), 404, "tunnel_not_found")


async def test_listings_and_filters(
    api: httpx.AsyncClient, web: dict[str, Any], db_tunnel: dict[str, Any], clock: FrozenClock
) -> None:
    active = await new_share(api, web["id"], name="active", expiresIn="never")
    clock.advance(seconds=1)
    expiring = await new_share(api, web["id"], name="expiring", expiresIn="1h")
    clock.advance(seconds=1)
    revoked = await new_share(api, web["id"], name="revoked")
    await api.delete(f"/v1/shares/{revoked['id']}")
    clock.advance(seconds=1)
    on_db = await new_share(api, db_tunnel["id"], name="db")
    clock.advance(hours=2)

    def ids(body: dict[str, Any]) -> list[str]:
        return [s["id"] for s in body["items"]]

    everything = (await api.get("/v1/shares")).json()
    assert ids(everything) == [on_db["id"], revoked["id"], expiring["id"], active["id"]]
    of_web = (await api.get(f"/v1/tunnels/{web['id']}/shares")).json()
    assert ids(of_web) == [revoked["id"], expiring["id"], active["id"]]
    by_id = (await api.get("/v1/shares", params={"tunnelId": db_tunnel["id"]})).json()
    assert ids(by_id) == [on_db["id"]]
    for status, expected in (
        ("active", [on_db["id"], active["id"]]),
        ("expired", [expiring["id"]]),
        ("revoked", [revoked["id"]]),
    ):
        assert ids((await api.get("/v1/shares", params={"status": status})).json()) == expected
    web_active = await api.get(f"/v1/tunnels/{web['id']}/shares", params={"status": "active"})
    assert ids(web_active.json()) == [active["id"]]
    assert_error(await api.get("/v1/shares", params={"status": "gone"}), 422)
    first = (await api.get("/v1/shares", params={"limit": 3})).json()
    second = (await api.get("/v1/shares", params={"cursor": first["nextCursor"]})).json()
    assert ids(first) + ids(second) == ids(everything) and second["nextCursor"] is None


async def test_access_logs(
    api: httpx.AsyncClient, web: dict[str, Any], clock: FrozenClock, ctx: ApiContext
) -> None:
    share = await new_share(api, web["id"])
    workspace_id = uuid.UUID((await api.get("/v1/hub")).json()["workspace"]["id"])
    for i in range(5):
        clock.advance(seconds=1)
        async with ctx.db.session() as session:
            found = await shares.get(session, workspace_id, uuid.UUID(share["id"]))
            access = shares.Access(
                share_id=found.id,
                workspace_id=found.workspace_id,
                at=clock.now(),
                remote_addr=f"203.0.113.{i}",
                method="GET",
                path=f"/page/{i}",
                status=200 if i != 2 else 403,
                allowed=i != 2,
                reason=None if i != 2 else "path_not_allowed",
                user_agent="curl/8",
            )
            await shares.record_accesses(session, [access])
    first = await api.get(f"/v1/shares/{share['id']}/access-logs", params={"limit": 3})
    assert first.status_code == 200, first.text
    page = first.json()
    assert [e["path"] for e in page["items"]] == ["/page/4", "/page/3", "/page/2"]
    denied = page["items"][2]
    assert denied == {
        "id": denied["id"], "shareId": share["id"], "at": "2026-01-01T00:00:03Z",
        "remoteAddr": "203.0.113.2", "method": "GET", "path": "/page/2", "statusCode": 403,
        "allowed": False, "reason": "path_not_allowed", "userAgent": "curl/8",
        "bytesIn": None, "bytesOut": None, "latencyMs": None,
    }  # fmt: skip
    rest = (
        await api.get(
            f"/v1/shares/{share['id']}/access-logs", params={"cursor": page["nextCursor"]}
        )
    ).json()
    assert [e["path"] for e in rest["items"]] == ["/page/1", "/page/0"]
    assert rest["nextCursor"] is None
    shown = (await api.get(f"/v1/shares/{share['id']}")).json()
    assert shown["accessCount"] == 4 and shown["lastAccessedAt"] == "2026-01-01T00:00:05Z"
    bad = await api.get(f"/v1/shares/{share['id']}/access-logs", params={"cursor": "garbage"})
    assert_error(bad, 422)
    for limit in (0, 201):
        response = await api.get(f"/v1/shares/{share['id']}/access-logs", params={"limit": limit})
        assert error_fields(response) == {"limit"}
