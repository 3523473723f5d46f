"""`/v1/tunnels/{tunnel}/connect` and `/connections`: bringing a tunnel to an agent's localhost.

The API twin of `portway reach`. A connection starts `pending`; the data plane tells the agent
to bind `localhost:<localPort>` and records `bound` or `error`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Response
from sqlalchemy.ext.asyncio import AsyncSession

from portway.api.auth import Auth, Ctx
from portway.api.ids import parse_id
from portway.api.problems import responses
from portway.api.routers.tunnels import TunnelRef
from portway.api.schemas import Limit, Page
from portway.api.tunnel_examples import CONNECT_EXAMPLES
from portway.api.tunnel_schemas import ConnectionCreate, ConnectionOut
from portway.domain import event_kinds as ev
from portway.domain import tunnel_rules as rules
from portway.store import agents, connections, tunnels
from portway.store.models import Connection, Tunnel

router = APIRouter(prefix="/v1/tunnels", tags=["connections"])

ConnectionId = Annotated[str, Path(description="The connection's id")]


def connection_out(connection: Connection, tunnel: Tunnel) -> ConnectionOut:
    """Protocol and connection string follow the tunnel's current (probed) protocol."""
    kind = rules.service_kind(tunnel.protocol, tunnel.target_port, tunnel.detected_protocol)
    return ConnectionOut(
        id=connection.id,
        tunnel_id=connection.tunnel_id,
        agent_id=connection.agent_id,
        local_host="localhost",
        local_port=connection.local_port,
        protocol=tunnel.protocol,
        connection_string=rules.connection_string(kind, connection.local_port, tunnel.meta),
        status=connection.status,
        status_reason=connection.status_reason,
        created_at=connection.created_at,
    )


@router.post(
    "/{tunnel_ref}/connect", status_code=201, response_model=ConnectionOut, responses=responses(409)
)
async def connect_tunnel(
    tunnel_ref: TunnelRef,
    body: Annotated[ConnectionCreate, Body(openapi_examples=CONNECT_EXAMPLES)],
    auth: Auth,
    ctx: Ctx,
) -> ConnectionOut:
    """Have an agent of this workspace listen on `localhost:<localPort>` for this tunnel.

    `localPort` defaults to the target's port. Errors: 404 `tunnel_not_found` or
    `agent_not_found`, 409 `local_port_taken` when that agent already binds the port.
    """

    async def work(session: AsyncSession) -> ConnectionOut:
        tunnel = await tunnels.get(session, auth.workspace_id, tunnel_ref)
        agent = await agents.get(session, auth.workspace_id, str(body.agent_id), field="agentId")
        local_port = body.local_port if body.local_port is not None else tunnel.target_port
        connection = await connections.create(
            session, tunnel, agent_id=agent.id, local_port=local_port, now=ctx.clock.now()
        )
        return connection_out(connection, tunnel)

    return await ctx.db.transact(work)


@router.get("/{tunnel_ref}/connections", response_model=Page[ConnectionOut], responses=responses())
async def list_connections(
    tunnel_ref: TunnelRef, auth: Auth, ctx: Ctx, limit: Limit = 50, cursor: str | None = None
) -> Page[ConnectionOut]:
    """The tunnel's connections, newest first."""
    async with ctx.db.session() as session:
        tunnel = await tunnels.get(session, auth.workspace_id, tunnel_ref)
        page = await connections.list_page(session, tunnel, limit=limit, cursor=cursor)
        items = [connection_out(c, tunnel) for c in page.items]
    return Page[ConnectionOut](items=items, next_cursor=page.next_cursor)


@router.delete("/{tunnel_ref}/connections/{connection_id}", status_code=204, responses=responses())
async def delete_connection(
    tunnel_ref: TunnelRef, connection_id: ConnectionId, auth: Auth, ctx: Ctx
) -> Response:
    """Stop bringing the tunnel to that agent; it closes its local listener."""
    async with ctx.db.session() as session:
        tunnel = await tunnels.get(session, auth.workspace_id, tunnel_ref)
        connection = await connections.get(session, tunnel, parse_id(connection_id, "connection"))
        await connections.delete(session, connection, now=ctx.clock.now(), reason=ev.REASON_DELETED)
    return Response(status_code=204)
