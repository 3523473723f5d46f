"""`/v1/tunnels`: the services agents expose (the API twin of `portway expose`).

Tunnels are addressed by id or by name. Another workspace's tunnel, a missing one and a
malformed id all give the same 404 (`store.tunnels.get`). Every change is recorded as an event
in its transaction. Errors come from the store and the tunnel rules as they are raised.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from portway.api.auth import Auth, Ctx
from portway.api.context import ApiContext
from portway.api.diagnostic_schemas import ProbeOut
from portway.api.problems import responses
from portway.api.schemas import SLUG_PATTERN, Limit, Page
from portway.api.tunnel_examples import TUNNEL_CREATE_EXAMPLES, TUNNEL_UPDATE_EXAMPLES
from portway.api.tunnel_schemas import (
    Target,
    TunnelCreate,
    TunnelOut,
    TunnelStats,
    TunnelUpdate,
)
from portway.domain import event_kinds as ev
from portway.domain import tunnel_rules as rules
from portway.store import agents, tunnels
from portway.store.models import Tunnel

router = APIRouter(prefix="/v1/tunnels", tags=["tunnels"])

TunnelRef = Annotated[str, Path(description="The tunnel's id, or its name", examples=["prod-db"])]


def tunnel_out(tunnel: Tunnel, ctx: ApiContext) -> TunnelOut:
    """The API representation; URLs are derived from the hub's current settings."""
    return TunnelOut(
        id=tunnel.id,
        name=tunnel.name,
        agent_id=tunnel.agent_id,
        target=Target(host=tunnel.target_host, port=tunnel.target_port),
        protocol=tunnel.protocol,
        requested_protocol=tunnel.requested_protocol,
        detected_protocol=tunnel.detected_protocol,
        probe=None if tunnel.probe is None else ProbeOut.model_validate(tunnel.probe),
        public=tunnel.public,
        public_url=rules.public_url(
            protocol=tunnel.protocol,
            public=tunnel.public,
            slug=tunnel.slug,
            hub_port=tunnel.hub_port,
            public_domain=ctx.config.public_domain,
            edge_port=ctx.config.edge_listen.port,
        ),
        hub_port=tunnel.hub_port,
        status=tunnel.status,
        status_reason=tunnel.status_reason,
        metadata=tunnel.meta,
        created_at=tunnel.created_at,
        updated_at=tunnel.updated_at,
        expires_at=tunnel.expires_at,
        stats=TunnelStats(
            active_connections=tunnel.active_connections,
            total_connections=tunnel.total_connections,
            bytes_in=tunnel.bytes_in,
            bytes_out=tunnel.bytes_out,
            last_connection_at=tunnel.last_connection_at,
            datagrams_in=tunnel.datagrams_in,
            datagrams_out=tunnel.datagrams_out,
            datagrams_dropped=tunnel.datagrams_dropped,
        ),
    )


@router.post("", status_code=201, response_model=TunnelOut, responses=responses(409))
async def create_tunnel(
    body: Annotated[TunnelCreate, Body(openapi_examples=TUNNEL_CREATE_EXAMPLES)],
    auth: Auth,
    ctx: Ctx,
) -> TunnelOut:
    """Expose a service through an agent (the API twin of `portway expose`).

    The tunnel starts `connecting`; it becomes `active` once the agent serves it. Errors:
    404 `agent_not_found`, 409 `tunnel_name_taken`, `hub_port_taken`, `no_free_hub_port`,
    422 for a `hubPort` outside the hub's range or on a private or HTTP tunnel.
    """
    target = body.target
    protocol = rules.resolve_protocol(body.protocol, target.port)
    if body.hub_port is not None:
        rules.check_hub_port(body.hub_port, ctx.config.port_range, protocol, body.public)
    lifetime = rules.ttl(body.expires_in)

    async def work(session: AsyncSession) -> TunnelOut:
        now = ctx.clock.now()
        agent = await agents.get(session, auth.workspace_id, str(body.agent_id), field="agentId")
        tunnel = await tunnels.create(
            session,
            auth.workspace_id,
            agent_id=agent.id,
            target_host=target.host,
            target_port=target.port,
            requested_protocol=body.protocol,
            name=body.name,
            public=body.public,
            hub_port=body.hub_port,
            port_range=ctx.config.port_range,
            metadata=body.metadata or {},
            expires_at=rules.expires_at(now, lifetime),
            now=now,
        )
        return tunnel_out(tunnel, ctx)

    return await ctx.db.transact(work)


@router.get("", response_model=Page[TunnelOut], responses=responses())
async def list_tunnels(
    *,
    auth: Auth,
    ctx: Ctx,
    status: Annotated[rules.TunnelStatus | None, Query(description="Only this status")] = None,
    agent_id: Annotated[
        uuid.UUID | None, Query(alias="agentId", description="Only tunnels this agent exposes")
    ] = None,
    protocol: Annotated[rules.Protocol | None, Query(description="Only this protocol")] = None,
    name: Annotated[
        str | None, Query(max_length=100, pattern=SLUG_PATTERN, description="Only this name")
    ] = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Page[TunnelOut]:
    """The workspace's tunnels, newest first; `nextCursor` pages stay stable under inserts."""
    async with ctx.db.session() as session:
        page = await tunnels.list_page(
            session,
            auth.workspace_id,
            status=status,
            agent_id=agent_id,
            protocol=protocol,
            name=name,
            limit=limit,
            cursor=cursor,
        )
    return Page[TunnelOut](
        items=[tunnel_out(t, ctx) for t in page.items], next_cursor=page.next_cursor
    )


@router.get("/{tunnel_ref}", response_model=TunnelOut, responses=responses())
async def get_tunnel(tunnel_ref: TunnelRef, auth: Auth, ctx: Ctx) -> TunnelOut:
    """One tunnel, by id or by name."""
    async with ctx.db.session() as session:
        return tunnel_out(await tunnels.get(session, auth.workspace_id, tunnel_ref), ctx)


@router.patch("/{tunnel_ref}", response_model=TunnelOut, responses=responses(409))
async def update_tunnel(
    tunnel_ref: TunnelRef,
    body: Annotated[TunnelUpdate, Body(openapi_examples=TUNNEL_UPDATE_EXAMPLES)],
    auth: Auth,
    ctx: Ctx,
) -> TunnelOut:
    """Rename, replace the metadata (`null` clears it), pause or resume.

    Pausing refuses new connections and closes live ones. Resuming a paused tunnel puts it
    back in `connecting` until its agent serves it again.
    """

    async def work(session: AsyncSession) -> TunnelOut:
        tunnel = await tunnels.get(session, auth.workspace_id, tunnel_ref)
        clear = "metadata" in body.model_fields_set and body.metadata is None
        await tunnels.update(
            session,
            tunnel,
            now=ctx.clock.now(),
            name=body.name,
            metadata={} if clear else body.metadata,
            status=body.status,
        )
        return tunnel_out(tunnel, ctx)

    return await ctx.db.transact(work)


@router.delete("/{tunnel_ref}", status_code=204, responses=responses())
async def delete_tunnel(tunnel_ref: TunnelRef, auth: Auth, ctx: Ctx) -> Response:
    """Delete a tunnel with its connections and shares; its hub port and URL are freed."""
    async with ctx.db.session() as session:
        tunnel = await tunnels.get(session, auth.workspace_id, tunnel_ref)
        await tunnels.delete(session, tunnel, now=ctx.clock.now(), reason=ev.REASON_DELETED)
    return Response(status_code=204)
