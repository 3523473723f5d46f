"""`/v1/workspaces`: tenants of this hub, managed with keys of the admin workspace only."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Response

from portway.api.auth import Admin, Ctx
from portway.api.ids import parse_id
from portway.api.problems import responses
from portway.api.schemas import DisplayName, Limit, Model, Page
from portway.errors import Conflict
from portway.store import api_keys, workspaces

router = APIRouter(prefix="/v1/workspaces", tags=["workspaces"])

FIRST_KEY_NAME = "default"


class WorkspaceCreate(Model):
    name: DisplayName


class WorkspaceOut(Model):
    id: uuid.UUID
    name: str
    is_admin: bool
    created_at: datetime


class WorkspaceCreated(WorkspaceOut):
    api_key: str


@router.post("", status_code=201, response_model=WorkspaceCreated, responses=responses(403, 409))
async def create_workspace(body: WorkspaceCreate, _admin: Admin, ctx: Ctx) -> WorkspaceCreated:
    """Create a workspace and its first API key; `apiKey` is shown in this response only."""
    now = ctx.clock.now()
    async with ctx.db.session() as session:
        workspace = await workspaces.create(session, body.name, now=now)
        _key, plaintext = await api_keys.create(session, workspace.id, FIRST_KEY_NAME, now=now)
        return WorkspaceCreated(
            **WorkspaceOut.model_validate(workspace).model_dump(), api_key=plaintext
        )


@router.get("", response_model=Page[WorkspaceOut], responses=responses(403))
async def list_workspaces(
    _admin: Admin, ctx: Ctx, limit: Limit = 50, cursor: str | None = None
) -> Page[WorkspaceOut]:
    async with ctx.db.session() as session:
        page = await workspaces.list_page(session, limit=limit, cursor=cursor)
    return Page[WorkspaceOut](
        items=[WorkspaceOut.model_validate(w) for w in page.items], next_cursor=page.next_cursor
    )


@router.delete("/{workspace_id}", status_code=204, responses=responses(403, 409))
async def delete_workspace(workspace_id: str, _admin: Admin, ctx: Ctx) -> Response:
    """Delete a workspace with everything it owns: keys, agents, tunnels, shares."""
    async with ctx.db.session() as session:
        workspace = await workspaces.get(session, parse_id(workspace_id, "workspace"))
        if workspace.is_admin:
            raise Conflict("the admin workspace cannot be deleted", code="admin_workspace")
        await workspaces.delete(session, workspace.id)
    return Response(status_code=204)
