"""`/v1/hub`: what a client needs to know about this hub and the caller's workspace."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from portway import __version__
from portway.api.auth import Auth, Ctx
from portway.api.problems import responses
from portway.api.schemas import Model
from portway.store import workspaces

router = APIRouter(prefix="/v1/hub", tags=["hub"])


class WorkspaceRef(Model):
    id: uuid.UUID
    name: str
    is_admin: bool


class AgentEndpointInfo(Model):
    """Where agents connect, and the CA they pin (null when the hub runs `--agent-tls off`)."""

    host: str
    port: int
    tls: bool
    ca_fingerprint: str | None
    ca_certificate: str | None


class HubInfo(Model):
    version: str
    public_domain: str
    workspace: WorkspaceRef
    agent_endpoint: AgentEndpointInfo | None


@router.get("", response_model=HubInfo, responses=responses())
async def hub_info(request: Request, auth: Auth, ctx: Ctx) -> HubInfo:
    """The hub's version and settings clients use, and the workspace the API key belongs to."""
    async with ctx.db.session() as session:
        workspace = await workspaces.get(session, auth.workspace_id)
        ref = WorkspaceRef.model_validate(workspace)
    endpoint = None
    if (known := ctx.agent_endpoint) is not None:
        # A wildcard bind is reachable at whatever name the caller used to reach this API.
        wildcard = ctx.config.agent_listen.host in ("0.0.0.0", "::", "")  # noqa: S104
        endpoint = AgentEndpointInfo(
            host=(request.url.hostname or known.host) if wildcard else known.host,
            port=known.port,
            tls=known.tls,
            ca_fingerprint=known.ca_fingerprint,
            ca_certificate=known.ca_certificate,
        )
    return HubInfo(
        version=__version__,
        public_domain=ctx.config.public_domain,
        workspace=ref,
        agent_endpoint=endpoint,
    )
