"""`/v1/hub`: what a client needs to know about this hub and the caller's workspace."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

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


class HubInfo(Model):
    version: str
    public_domain: str
    workspace: WorkspaceRef


@router.get("", response_model=HubInfo, responses=responses())
async def hub_info(auth: Auth, ctx: Ctx) -> HubInfo:
    """The hub's version and settings clients use, and the workspace the API key belongs to."""
    async with ctx.db.session() as session:
        workspace = await workspaces.get(session, auth.workspace_id)
        ref = WorkspaceRef.model_validate(workspace)
    return HubInfo(version=__version__, public_domain=ctx.config.public_domain, workspace=ref)
