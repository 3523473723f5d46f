"""`/v1/tunnels/{tunnel}/connect` and `/connections`: the API twin of `portway reach`."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import update

from portway.api.context import ApiContext
from portway.store import connections
from portway.store.models import Tunnel
from tests.api.helpers import assert_error, error_fields
from tests.api.tunnel_helpers import events, new_agent, new_tunnel

CONNECTION_FIELDS = {
    "id", "tunnelId", "agentId", "localHost", "localPort", "protocol", "connectionString",
    "status", "statusReason", "createdAt",
}  # fmt: skip


@pytest.fixture
async def agents(api: httpx.AsyncClient) -> tuple[str, str]:
    """(exposing agent, reaching agent)"""
    return await new_agent(api, "exposer"), await new_agent(api, "reacher")


async def _connect(
    api: httpx.AsyncClient, tunnel: str, agent: str, **fields: object
) -> httpx.Response:
    return await api.post(f"/v1/tunnels/{tunnel}/connect", json={"agentId": agent, **fields})


async def test_connect_defaults_to_the_target_port(
    api: httpx.AsyncClient, agents: tuple[str, str], ctx: ApiContext
) -> None:
    exposer, reacher = agents
    tunnel = await new_tunnel(api, exposer, name="prod-db")
    response = await _connect(api, "prod-db", reacher)
    assert response.status_code == 201, response.text
    connection = response.json()
    assert set(connection) == CONNECTION_FIELDS
    assert connection["tunnelId"] == tunnel["id"] and connection["agentId"] == reacher
    assert connection["localHost"] == "localhost" and connection["localPort"] == 5432
    assert connection["protocol"] == "tcp" and connection["status"] == "pending"
    assert connection["connectionString"] == "postgresql://localhost:5432/postgres"
    [event] = await events(ctx, "connection.created")
    assert event.object_id == connection["id"]
    assert event.payload["connection"]["localPort"] == 5432


@pytest.mark.parametrize(
    ("target", "protocol", "expected"),
    [
        ("db:5432", "auto", "postgresql://localhost:{p}/postgres"),
        ("db:3306", "auto", "mysql://localhost:{p}"),
        ("db:6379", "auto", "redis://localhost:{p}"),
        ("db:27017", "auto", "mongodb://localhost:{p}"),
        ("web:8080", "auto", "http://localhost:{p}"),
        ("web:443", "auto", "https://localhost:{p}"),
        ("dns:53", "udp", "udp://localhost:{p}"),
        ("db:5432", "udp", "udp://localhost:{p}"),
        ("box:22", "auto", "tcp://localhost:{p}"),
        ("db:6379", "http", "http://localhost:{p}"),
    ],
)
async def test_connection_strings(
    api: httpx.AsyncClient, agents: tuple[str, str], target: str, protocol: str, expected: str
) -> None:
    exposer, reacher = agents
    tunnel = await new_tunnel(api, exposer, target=target, protocol=protocol)
    connection = (await _connect(api, tunnel["id"], reacher, localPort=15000)).json()
    assert connection["connectionString"] == expected.format(p=15000)
    assert connection["protocol"] == tunnel["protocol"]


async def test_probed_protocol_changes_the_connection_string(
    api: httpx.AsyncClient, agents: tuple[str, str], ctx: ApiContext
) -> None:
    exposer, reacher = agents
    tunnel = await new_tunnel(api, exposer, target="db:15432")
    connection = (await _connect(api, tunnel["id"], reacher)).json()
    assert connection["connectionString"] == "tcp://localhost:15432"
    async with ctx.db.session() as session:
        await session.execute(
            update(Tunnel)
            .where(Tunnel.id == uuid.UUID(tunnel["id"]))
            .values(detected_protocol="postgres")
        )
    [listed] = (await api.get(f"/v1/tunnels/{tunnel['id']}/connections")).json()["items"]
    assert listed["connectionString"] == "postgresql://localhost:15432/postgres"


@pytest.mark.parametrize(("port", "ok"), [(1, True), (65535, True), (0, False), (65536, False)])
async def test_local_port_bounds(
    api: httpx.AsyncClient, agents: tuple[str, str], port: int, ok: bool
) -> None:
    exposer, reacher = agents
    tunnel = await new_tunnel(api, exposer)
    response = await _connect(api, tunnel["id"], reacher, localPort=port)
    if ok:
        assert response.status_code == 201, response.text
        assert response.json()["localPort"] == port
    else:
        assert_error(response, 422)
        assert error_fields(response) == {"localPort"}


@pytest.mark.parametrize("body", [{"localPort": "5432"}, {"localPort": 5432.5}, {"extra": 1}])
async def test_connect_body_is_strict(
    api: httpx.AsyncClient, agents: tuple[str, str], body: dict[str, object]
) -> None:
    exposer, reacher = agents
    tunnel = await new_tunnel(api, exposer)
    response = await _connect(api, tunnel["id"], reacher, **body)
    assert_error(response, 422)
    assert error_fields(response) == set(body)


async def test_agent_must_be_of_the_workspace(
    api: httpx.AsyncClient, agents: tuple[str, str]
) -> None:
    tunnel = await new_tunnel(api, agents[0])
    error = assert_error(
        await _connect(api, tunnel["id"], str(uuid.uuid4())), 404, "agent_not_found"
    )
    assert error["details"][0]["field"] == "agentId"
    assert error_fields(await _connect(api, tunnel["id"], "laptop")) == {"agentId"}


async def test_one_agent_cannot_bind_a_port_twice(
    api: httpx.AsyncClient, agents: tuple[str, str]
) -> None:
    exposer, reacher = agents
    first = await new_tunnel(api, exposer, name="one")
    second = await new_tunnel(api, exposer, name="two")
    bound = (await _connect(api, "one", reacher)).json()
    error = assert_error(await _connect(api, "two", reacher), 409, "local_port_taken")
    assert error["details"] == {"connectionId": bound["id"], "tunnelId": first["id"]}
    # Another port on the same agent, or the same port on another agent, is fine.
    assert (await _connect(api, "two", reacher, localPort=15432)).status_code == 201
    assert (await _connect(api, "two", exposer)).json()["tunnelId"] == second["id"]


async def test_list_and_delete(
    api: httpx.AsyncClient, agents: tuple[str, str], ctx: ApiContext
) -> None:
    exposer, reacher = agents
    tunnel = await new_tunnel(api, exposer)
    other_tunnel = await new_tunnel(api, exposer, target="cache:6379")
    made = [(await _connect(api, tunnel["id"], reacher, localPort=p)).json() for p in (1, 2, 3)]
    foreign = (await _connect(api, other_tunnel["id"], reacher)).json()
    page = (await api.get(f"/v1/tunnels/{tunnel['id']}/connections", params={"limit": 2})).json()
    rest = (
        await api.get(
            f"/v1/tunnels/{tunnel['id']}/connections", params={"cursor": page["nextCursor"]}
        )
    ).json()
    assert rest["nextCursor"] is None
    assert {c["id"] for c in page["items"] + rest["items"]} == {c["id"] for c in made}
    path = f"/v1/tunnels/{tunnel['id']}/connections"
    assert (await api.delete(f"{path}/{made[0]['id']}")).status_code == 204
    assert_error(await api.delete(f"{path}/{made[0]['id']}"), 404, "connection_not_found")
    # A connection is only reachable through its own tunnel; a malformed id is a 404 too.
    assert_error(await api.delete(f"{path}/{foreign['id']}"), 404, "connection_not_found")
    assert_error(await api.delete(f"{path}/not-an-id"), 404, "connection_not_found")
    listed = (await api.get(path)).json()["items"]
    assert {c["id"] for c in listed} == {made[1]["id"], made[2]["id"]}
    [deleted] = await events(ctx, "connection.deleted")
    assert deleted.object_id == made[0]["id"] and deleted.payload["reason"] == "deleted"


async def test_data_plane_reports_binding(
    api: httpx.AsyncClient, agents: tuple[str, str], ctx: ApiContext
) -> None:
    exposer, reacher = agents
    tunnel = await new_tunnel(api, exposer)
    connection = (await _connect(api, tunnel["id"], reacher)).json()
    async with ctx.db.session() as session:
        ok = await connections.set_status(
            session, uuid.UUID(connection["id"]), "error", "port 5432 in use", now=ctx.clock.now()
        )
        assert ok
        assert not await connections.set_status(
            session, uuid.uuid4(), "bound", None, now=ctx.clock.now()
        )
    [listed] = (await api.get(f"/v1/tunnels/{tunnel['id']}/connections")).json()["items"]
    assert (listed["status"], listed["statusReason"]) == ("error", "port 5432 in use")


async def test_deleting_the_receiving_agent_deletes_its_connections(
    api: httpx.AsyncClient, agents: tuple[str, str], ctx: ApiContext
) -> None:
    exposer, reacher = agents
    tunnel = await new_tunnel(api, exposer)
    connection = (await _connect(api, tunnel["id"], reacher)).json()
    assert (await api.delete(f"/v1/agents/{reacher}")).status_code == 204
    assert (await api.get(f"/v1/tunnels/{tunnel['id']}/connections")).json()["items"] == []
    [deleted] = await events(ctx, "connection.deleted")
    assert deleted.object_id == connection["id"] and deleted.payload["reason"] == "agent_deleted"


async def test_deleting_the_exposing_agent_deletes_its_tunnels(
    api: httpx.AsyncClient, agents: tuple[str, str], ctx: ApiContext
) -> None:
    exposer, reacher = agents
    tunnel = await new_tunnel(api, exposer)
    await _connect(api, tunnel["id"], reacher)
    assert (await api.delete(f"/v1/agents/{exposer}")).status_code == 204
    assert_error(await api.get(f"/v1/tunnels/{tunnel['id']}"), 404, "tunnel_not_found")
    [deleted] = await events(ctx, "tunnel.deleted")
    assert deleted.object_id == tunnel["id"] and deleted.payload["reason"] == "agent_deleted"
    assert len(await events(ctx, "connection.deleted")) == 1
