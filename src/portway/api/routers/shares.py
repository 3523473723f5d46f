"""Shares: links to a tunnel for outsiders, with an expiry and a policy the edge enforces.

`POST /v1/tunnels/{tunnel}/shares` returns the token once (with the link to hand out); every
other route shows only its `tokenPrefix`. Revoking keeps the share visible as `revoked`.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from portway.api.auth import Auth, Ctx
from portway.api.context import ApiContext
from portway.api.ids import parse_id
from portway.api.problems import responses
from portway.api.routers.tunnels import TunnelRef
from portway.api.schemas import Limit, Page
from portway.api.tunnel_examples import SHARE_CREATE_EXAMPLES
from portway.api.tunnel_schemas import (
    AccessLogOut,
    ShareCreate,
    ShareCreated,
    ShareOut,
)
from portway.domain import share_rules
from portway.domain import tunnel_rules as rules
from portway.domain.share_rules import ShareStatus
from portway.errors import InvalidInput, field_details
from portway.store import shares, tunnels
from portway.store.models import Share

router = APIRouter(tags=["shares"])

ShareId = Annotated[str, Path(description="The share's id")]


def share_out(share: Share, ctx: ApiContext) -> ShareOut:
    status = share_rules.share_status(share.revoked_at, share.expires_at, ctx.clock.now())
    return ShareOut(
        id=share.id,
        tunnel_id=share.tunnel_id,
        name=share.name,
        description=share.description,
        token_prefix=share.token_prefix,
        status=status,
        expires_at=share.expires_at,
        allowed_methods=share.allowed_methods,
        allowed_paths=share.allowed_paths,
        rate_limit=share.rate_limit,
        created_at=share.created_at,
        revoked_at=share.revoked_at,
        access_count=share.access_count,
        last_accessed_at=share.last_accessed_at,
    )


async def _find_share(session: AsyncSession, workspace_id: uuid.UUID, share_id: str) -> Share:
    return await shares.get(session, workspace_id, parse_id(share_id, "share"))


def _http_only(field: str, protocol: str) -> InvalidInput:
    message = (
        f"{field} applies to HTTP and HTTPS tunnels only; this tunnel is {protocol} "
        "(a TCP/UDP share is opened with 'portway join', which has no methods or paths)"
    )
    return InvalidInput(message, field=field, details=field_details(field, message, "protocol"))


@router.post(
    "/v1/tunnels/{tunnel_ref}/shares",
    status_code=201,
    response_model=ShareCreated,
    responses=responses(),
)
async def create_share(
    tunnel_ref: TunnelRef,
    body: Annotated[ShareCreate, Body(openapi_examples=SHARE_CREATE_EXAMPLES)],
    auth: Auth,
    ctx: Ctx,
) -> ShareCreated:
    """Create a link to this tunnel (the API twin of `portway share`).

    `token` and `shareUrl` appear in this response only. `allowedMethods` and `allowedPaths`
    are for HTTP/HTTPS tunnels (422 otherwise); `rateLimit` counts requests per minute, or
    new connections per minute for a TCP/UDP tunnel.
    """
    async with ctx.db.session() as session:
        tunnel = await tunnels.get(session, auth.workspace_id, tunnel_ref)
        if not share_rules.uses_edge(tunnel.protocol):
            if body.allowed_methods is not None:
                raise _http_only("allowedMethods", tunnel.protocol)
            if body.allowed_paths is not None:
                raise _http_only("allowedPaths", tunnel.protocol)
        now = ctx.clock.now()
        share, token = await shares.create(
            session,
            tunnel,
            name=body.name,
            description=body.description,
            expires_at=rules.expires_at(now, rules.ttl(body.expires_in)),
            allowed_methods=body.allowed_methods,
            allowed_paths=body.allowed_paths,
            rate_limit=body.rate_limit,
            now=now,
        )
        url = share_rules.share_url(
            token,
            tunnel.protocol,
            public_domain=ctx.config.public_domain,
            edge_port=ctx.config.edge_listen.port,
            api_url=ctx.config.api_url,
        )
        return ShareCreated(**share_out(share, ctx).model_dump(), token=token, share_url=url)


StatusFilter = Annotated[
    ShareStatus | None, Query(description="Only shares in this state (derived from the clock)")
]


@router.get("/v1/tunnels/{tunnel_ref}/shares", response_model=Page[ShareOut], responses=responses())
async def list_tunnel_shares(
    *,
    tunnel_ref: TunnelRef,
    auth: Auth,
    ctx: Ctx,
    status: StatusFilter = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Page[ShareOut]:
    """The tunnel's shares, newest first, revoked and expired ones included unless filtered."""
    async with ctx.db.session() as session:
        tunnel = await tunnels.get(session, auth.workspace_id, tunnel_ref)
        page = await shares.list_page(
            session,
            auth.workspace_id,
            tunnel_id=tunnel.id,
            status=status,
            now=ctx.clock.now(),
            limit=limit,
            cursor=cursor,
        )
    return Page[ShareOut](
        items=[share_out(s, ctx) for s in page.items], next_cursor=page.next_cursor
    )


@router.get("/v1/shares", response_model=Page[ShareOut], responses=responses())
async def list_shares(
    *,
    auth: Auth,
    ctx: Ctx,
    tunnel_id: Annotated[
        uuid.UUID | None, Query(alias="tunnelId", description="Only this tunnel's shares")
    ] = None,
    status: StatusFilter = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Page[ShareOut]:
    """Every share of the workspace, newest first."""
    async with ctx.db.session() as session:
        page = await shares.list_page(
            session,
            auth.workspace_id,
            tunnel_id=tunnel_id,
            status=status,
            now=ctx.clock.now(),
            limit=limit,
            cursor=cursor,
        )
    return Page[ShareOut](
        items=[share_out(s, ctx) for s in page.items], next_cursor=page.next_cursor
    )


@router.get("/v1/shares/{share_id}", response_model=ShareOut, responses=responses())
async def get_share(share_id: ShareId, auth: Auth, ctx: Ctx) -> ShareOut:
    """One share; its token is never shown again, only `tokenPrefix`."""
    async with ctx.db.session() as session:
        return share_out(await _find_share(session, auth.workspace_id, share_id), ctx)


@router.delete("/v1/shares/{share_id}", status_code=204, responses=responses())
async def revoke_share(share_id: ShareId, auth: Auth, ctx: Ctx) -> Response:
    """Revoke a share: its link stops working at once. Revoking it again is a harmless 204."""
    async with ctx.db.session() as session:
        share = await _find_share(session, auth.workspace_id, share_id)
        await shares.revoke(session, share, now=ctx.clock.now())
    if ctx.revocations is not None:
        ctx.revocations.forget()
    return Response(status_code=204)


@router.get(
    "/v1/shares/{share_id}/access-logs", response_model=Page[AccessLogOut], responses=responses()
)
async def list_access_logs(
    share_id: ShareId, auth: Auth, ctx: Ctx, limit: Limit = 50, cursor: str | None = None
) -> Page[AccessLogOut]:
    """Who used the share and what the edge decided, newest first."""
    async with ctx.db.session() as session:
        share = await _find_share(session, auth.workspace_id, share_id)
        page = await shares.access_logs(session, share, limit=limit, cursor=cursor)
    items = [
        AccessLogOut(
            id=log.id,
            share_id=log.share_id,
            at=log.created_at,
            remote_addr=log.remote_addr,
            method=log.method,
            path=log.path,
            status_code=log.status_code,
            allowed=log.allowed,
            reason=log.reason,
            user_agent=log.user_agent,
            bytes_in=log.bytes_in,
            bytes_out=log.bytes_out,
            latency_ms=log.latency_ms,
        )
        for log in page.items
    ]
    return Page[AccessLogOut](items=items, next_cursor=page.next_cursor)
