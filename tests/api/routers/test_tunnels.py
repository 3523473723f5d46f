"""`/v1/tunnels`: representation, protocols and names, lookups, updates, deletion, events."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import httpx
import pytest

from portway.api.context import ApiContext
from portway.domain.clock import FrozenClock
from tests.api.helpers import assert_error, error_fields
from tests.api.tunnel_helpers import (
    events,
    metadata_of_size,
    new_agent,
    new_share,
    new_tunnel,
    post_tunnel,
)

TUNNEL_FIELDS = {
    "id", "name", "agentId", "target", "protocol", "requestedProtocol", "detectedProtocol", "probe",
    "public", "publicUrl",
    "hubPort", "status", "statusReason", "metadata", "createdAt", "updatedAt", "expiresAt",
    "stats",
}  # fmt: skip
STATS_FIELDS = {
    "activeConnections", "totalConnections", "bytesIn", "bytesOut", "lastConnectionAt",
    "datagramsIn", "datagramsOut", "datagramsDropped",
}  # fmt: skip


async def test_create_minimal(api: httpx.AsyncClient, agent: str, ctx: ApiContext) -> None:
    tunnel = await new_tunnel(api, agent)
    assert set(tunnel) == TUNNEL_FIELDS and set(tunnel["stats"]) == STATS_FIELDS
    uuid.UUID(tunnel["id"])
    assert re.fullmatch(r"postgres-[a-z0-9]{4}", tunnel["name"])
    assert tunnel["agentId"] == agent
    assert tunnel["target"] == {"host": "localhost", "port": 5432}
    assert (tunnel["protocol"], tunnel["requestedProtocol"]) == ("tcp", "auto")
    assert tunnel["status"] == "connecting" and tunnel["statusReason"] is None
    assert tunnel["public"] is False and tunnel["publicUrl"] is None and tunnel["hubPort"] is None
    assert tunnel["metadata"] == {} and tunnel["expiresAt"] is None
    assert tunnel["createdAt"] == tunnel["updatedAt"] == "2026-01-01T00:00:00Z"
    assert tunnel["stats"] == {
        "activeConnections": 0, "totalConnections": 0, "bytesIn": 0, "bytesOut": 0,
        "lastConnectionAt": None, "datagramsIn": 0, "datagramsOut": 0, "datagramsDropped": 0,
    }  # fmt: skip
    assert (await api.get(f"/v1/tunnels/{tunnel['id']}")).json() == tunnel
    [event] = await events(ctx, "tunnel.created")
    assert event.object_id == tunnel["id"] and event.payload["tunnel"]["name"] == tunnel["name"]


@pytest.mark.parametrize(
    ("port", "requested", "protocol", "service"),
    [
        (5432, "auto", "tcp", "postgres"),
        (3306, "auto", "tcp", "mysql"),
        (6379, "auto", "tcp", "redis"),
        (27017, "auto", "tcp", "mongodb"),
        (80, "auto", "http", "http"),
        (3000, "auto", "http", "http"),
        (5000, "auto", "http", "http"),
        (8000, "auto", "http", "http"),
        (8080, "auto", "http", "http"),
        (443, "auto", "https", "https"),
        (8443, "auto", "https", "https"),
        (22, "auto", "tcp", "tcp"),
        (5432, "udp", "udp", "udp"),
        (9000, "http", "http", "http"),
        (80, "tcp", "tcp", "tcp"),
        (6379, "https", "https", "https"),
    ],
)
async def test_protocol_resolution_and_generated_name(
    api: httpx.AsyncClient, agent: str, port: int, requested: str, protocol: str, service: str
) -> None:
    tunnel = await new_tunnel(api, agent, target=f"db.internal:{port}", protocol=requested)
    assert tunnel["protocol"] == protocol and tunnel["requestedProtocol"] == requested
    assert re.fullmatch(rf"{service}-[a-z0-9]{{4}}", tunnel["name"]), tunnel["name"]


async def test_unknown_protocol_is_refused(api: httpx.AsyncClient, agent: str) -> None:
    response = await post_tunnel(api, agent, protocol="postgres")
    assert_error(response, 422)
    assert error_fields(response) == {"protocol"}


async def test_unnamed_tunnels_on_one_port_never_replace_each_other(
    api: httpx.AsyncClient, agent: str
) -> None:
    first = await new_tunnel(api, agent)
    second = await new_tunnel(api, agent, target="other:5432")
    assert first["name"] != second["name"] and first["id"] != second["id"]
    assert (await api.get(f"/v1/tunnels/{first['id']}")).json()["target"]["host"] == "localhost"
    assert len((await api.get("/v1/tunnels")).json()["items"]) == 2


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("x" * 100, True),
        ("x" * 101, False),
        ("", False),
        ("has space", False),
        ("-dash-first", False),
        ("prod-db.v2_ro", True),
    ],
)
async def test_name_bounds(api: httpx.AsyncClient, agent: str, name: str, ok: bool) -> None:
    response = await post_tunnel(api, agent, name=name)
    if ok:
        assert response.status_code == 201, response.text
        assert response.json()["name"] == name
    else:
        assert_error(response, 422)
        assert error_fields(response) == {"name"}


async def test_duplicate_name_is_a_conflict_not_a_replace(
    api: httpx.AsyncClient, agent: str, other: httpx.AsyncClient
) -> None:
    original = await new_tunnel(api, agent, name="prod-db")
    response = await post_tunnel(api, agent, name="prod-db", target="elsewhere:5432")
    assert_error(response, 409, "tunnel_name_taken")
    kept = (await api.get("/v1/tunnels/prod-db")).json()
    assert kept["id"] == original["id"] and kept["target"]["host"] == "localhost"
    # Names are per workspace.
    await new_tunnel(other, await new_agent(other), name="prod-db")


async def test_concurrent_creates_with_one_name(api: httpx.AsyncClient, agent: str) -> None:
    responses = await asyncio.gather(*(post_tunnel(api, agent, name="race") for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409]
    for response in responses:
        if response.status_code == 409:
            assert_error(response, 409, "tunnel_name_taken")


async def test_agent_must_exist_in_the_workspace(
    api: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    missing = await post_tunnel(api, str(uuid.uuid4()))
    error = assert_error(missing, 404, "agent_not_found")
    assert error["details"][0]["field"] == "agentId"
    malformed = await post_tunnel(api, "not-a-uuid")
    assert_error(malformed, 422)
    assert error_fields(malformed) == {"agentId"}
    absent = await api.post("/v1/tunnels", json={"target": "localhost:5432"})
    assert error_fields(absent) == {"agentId"}


async def test_get_by_id_or_name(api: httpx.AsyncClient, agent: str) -> None:
    tunnel = await new_tunnel(api, agent, name="by-name")
    assert (await api.get("/v1/tunnels/by-name")).json()["id"] == tunnel["id"]
    assert (await api.get(f"/v1/tunnels/{tunnel['id']}")).json()["name"] == "by-name"
    for ref in ("missing", str(uuid.uuid4()), "not-a-uuid-at-all", "%00", "x" * 300):
        assert_error(await api.get(f"/v1/tunnels/{ref}"), 404, "tunnel_not_found")
    # NUL cannot be stored in PostgreSQL, so it must not even reach a query (agents likewise).
    assert_error(await api.get("/v1/agents/%00"), 404, "agent_not_found")


async def test_patch_rename_and_metadata(
    api: httpx.AsyncClient, agent: str, ctx: ApiContext, clock: FrozenClock
) -> None:
    tunnel = await new_tunnel(api, agent, name="old", metadata={"a": 1})
    await new_tunnel(api, agent, name="taken")
    clock.advance(seconds=5)
    renamed = await api.patch("/v1/tunnels/old", json={"name": "new", "metadata": {"b": [2]}})
    assert renamed.status_code == 200, renamed.text
    body = renamed.json()
    assert body["name"] == "new" and body["metadata"] == {"b": [2]}
    assert body["updatedAt"] == "2026-01-01T00:00:05Z" and body["createdAt"] == tunnel["createdAt"]
    [updated] = await events(ctx, "tunnel.updated")
    assert updated.payload["changed"] == ["name", "metadata"]
    assert updated.payload["tunnel"]["name"] == "new"
    assert_error(
        await api.patch("/v1/tunnels/new", json={"name": "taken"}), 409, "tunnel_name_taken"
    )
    for bad in ("", "x" * 101, "bad name"):
        response = await api.patch("/v1/tunnels/new", json={"name": bad})
        assert_error(response, 422)
        assert error_fields(response) == {"name"}
    assert (await api.patch("/v1/tunnels/new", json={"name": "y" * 100})).status_code == 200
    cleared = (await api.patch(f"/v1/tunnels/{tunnel['id']}", json={"metadata": None})).json()
    assert cleared["metadata"] == {}
    too_big = await api.patch(
        f"/v1/tunnels/{tunnel['id']}", json={"metadata": metadata_of_size(16385)}
    )
    assert error_fields(too_big) == {"metadata"}
    assert_error(await api.patch(f"/v1/tunnels/{tunnel['id']}", json={"target": "x:1"}), 422)


async def test_patch_without_changes_records_nothing(
    api: httpx.AsyncClient, agent: str, ctx: ApiContext
) -> None:
    tunnel = await new_tunnel(api, agent, name="same", metadata={"a": 1})
    response = await api.patch(
        "/v1/tunnels/same", json={"name": "same", "metadata": {"a": 1}, "status": "active"}
    )
    assert response.json() == tunnel
    assert [e.type for e in await events(ctx)] == ["tunnel.created"]


async def test_pause_and_resume(api: httpx.AsyncClient, agent: str, ctx: ApiContext) -> None:
    tunnel = await new_tunnel(api, agent)
    paused = (await api.patch(f"/v1/tunnels/{tunnel['id']}", json={"status": "paused"})).json()
    assert paused["status"] == "paused"
    again = (await api.patch(f"/v1/tunnels/{tunnel['id']}", json={"status": "paused"})).json()
    assert again["status"] == "paused"
    resumed = (await api.patch(f"/v1/tunnels/{tunnel['id']}", json={"status": "active"})).json()
    # The data plane promotes it to active once an agent serves it again.
    assert resumed["status"] == "connecting"
    changes = await events(ctx, "tunnel.status_changed")
    assert [(e.payload["previousStatus"], e.payload["tunnel"]["status"]) for e in changes] == [
        ("connecting", "paused"),
        ("paused", "connecting"),
    ]
    for status in ("connecting", "error", "deleted", None, 1):
        response = await api.patch(f"/v1/tunnels/{tunnel['id']}", json={"status": status})
        if status is None:
            assert response.status_code == 200
            continue
        assert_error(response, 422)
        assert error_fields(response) == {"status"}


async def test_delete_takes_connections_and_shares(
    api: httpx.AsyncClient, agent: str, ctx: ApiContext
) -> None:
    tunnel = await new_tunnel(api, agent, name="doomed")
    connection = (
        await api.post(f"/v1/tunnels/{tunnel['id']}/connect", json={"agentId": agent})
    ).json()
    share = await new_share(api, tunnel["id"])
    revoked = await new_share(api, tunnel["id"], name="old")
    assert (await api.delete(f"/v1/shares/{revoked['id']}")).status_code == 204
    assert (await api.delete("/v1/tunnels/doomed")).status_code == 204
    assert_error(await api.get(f"/v1/tunnels/{tunnel['id']}"), 404, "tunnel_not_found")
    assert_error(await api.get(f"/v1/shares/{share['id']}"), 404, "share_not_found")
    assert_error(await api.delete(f"/v1/tunnels/{tunnel['id']}"), 404, "tunnel_not_found")
    tail = [(e.type, e.object_id, e.payload.get("reason")) for e in (await events(ctx))[-3:]]
    assert tail == [
        ("connection.deleted", connection["id"], "deleted"),
        ("share.revoked", share["id"], "tunnel_deleted"),
        ("tunnel.deleted", tunnel["id"], "deleted"),
    ]
    async with ctx.db.session() as session:
        from sqlalchemy import func, select

        from portway.store.models import Connection, Share

        assert await session.scalar(select(func.count()).select_from(Connection)) == 0
        assert await session.scalar(select(func.count()).select_from(Share)) == 0


async def test_event_payloads_are_json_without_secrets(
    api: httpx.AsyncClient, agent: str, ctx: ApiContext
) -> None:
    tunnel = await new_tunnel(api, agent, target="localhost:80")
    share = await new_share(api, tunnel["id"])
    for event in await events(ctx):
        text = json.dumps(event.payload)
        assert share["token"] not in text
        assert event.created_at == ctx.clock.now() and event.workspace_id is not None
    [created] = await events(ctx, "share.created")
    assert created.payload["share"]["tokenPrefix"] == share["tokenPrefix"]
