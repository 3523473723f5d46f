"""`/v1/join/{token}`: what a guest's `portway join` needs, answered without an API key.

The share token itself is the credential. `portway join SHARE_URL` calls this once, then opens
an agent session with the token (the hub admits it as a guest allowed to reach only the shared
tunnel, see `portway.hub.dataplane.guests`). Unknown tokens get 404, revoked or expired 410.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Request
from sqlalchemy import select

from portway.api.auth import Ctx
from portway.api.problems import responses
from portway.api.routers.hub_info import AgentEndpointInfo
from portway.api.schemas import Model
from portway.domain import secrets
from portway.domain.share_rules import share_status
from portway.errors import Gone, NotFound
from portway.store.models import Share, Tunnel

router = APIRouter(prefix="/v1/join", tags=["shares"])


class JoinTunnel(Model):
    id: uuid.UUID
    name: str
    protocol: str
    port: int


class JoinInfo(Model):
    share_id: uuid.UUID
    tunnel: JoinTunnel
    expires_at: datetime | None
    rate_limit: int | None
    agent_endpoint: AgentEndpointInfo | None


@router.get("/{token}", response_model=JoinInfo, responses=responses(404, 410))
async def join_info(token: str, request: Request, ctx: Ctx) -> JoinInfo:
    """The agent endpoint, its CA, and the shared tunnel, for a still-usable share token."""
    if not token.startswith(secrets.SHARE_TOKEN_PREFIX) or len(token) > 200:
        raise NotFound("no such share", code="share_not_found")
    async with ctx.db.session() as session:
        row = (
            await session.execute(
                select(Share, Tunnel)
                .join(Tunnel, Tunnel.id == Share.tunnel_id)
                .where(Share.token_hash == secrets.digest(token))
            )
        ).first()
        if row is None or not secrets.matches(token, row[0].token_hash):
            raise NotFound("no such share", code="share_not_found")
        share, tunnel = row
        status = share_status(share.revoked_at, share.expires_at, ctx.clock.now())
        if status != "active":
            raise Gone(f"this share was {status}", code=f"share_{status}")
        info = JoinInfo(
            share_id=share.id,
            tunnel=JoinTunnel(
                id=tunnel.id, name=tunnel.name, protocol=tunnel.protocol, port=tunnel.target_port
            ),
            expires_at=share.expires_at,
            rate_limit=share.rate_limit,
            agent_endpoint=None,
        )
    if (known := ctx.agent_endpoint) is not None:
        wildcard = ctx.config.agent_listen.host in ("0.0.0.0", "::", "")  # noqa: S104
        info.agent_endpoint = AgentEndpointInfo(
            host=(request.url.hostname or known.host) if wildcard else known.host,
            port=known.port, tls=known.tls, ca_fingerprint=known.ca_fingerprint,
            ca_certificate=known.ca_certificate,
        )  # fmt: skip
    return info
