"""`/v1/api-keys`: a workspace's keys. The plaintext key is returned once, at creation."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Response

from portway.api.auth import Auth, Ctx
from portway.api.ids import parse_id
from portway.api.problems import responses
from portway.api.schemas import DisplayName, Limit, Model, Page
from portway.store import api_keys

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])


class ApiKeyCreate(Model):
    name: DisplayName


class ApiKeyOut(Model):
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str


@router.post("", status_code=201, response_model=ApiKeyCreated, responses=responses(409))
async def create_api_key(body: ApiKeyCreate, auth: Auth, ctx: Ctx) -> ApiKeyCreated:
    """Create a key for the caller's workspace. `key` is shown in this response only."""
    async with ctx.db.session() as session:
        key, plaintext = await api_keys.create(
            session, auth.workspace_id, body.name, now=ctx.clock.now()
        )
        return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=plaintext)


@router.get("", response_model=Page[ApiKeyOut], responses=responses())
async def list_api_keys(
    auth: Auth, ctx: Ctx, limit: Limit = 50, cursor: str | None = None
) -> Page[ApiKeyOut]:
    """Active keys of the caller's workspace, newest first."""
    async with ctx.db.session() as session:
        page = await api_keys.list_page(session, auth.workspace_id, limit=limit, cursor=cursor)
    return Page[ApiKeyOut](
        items=[ApiKeyOut.model_validate(k) for k in page.items], next_cursor=page.next_cursor
    )


@router.delete("/{key_id}", status_code=204, responses=responses(409))
async def revoke_api_key(key_id: str, auth: Auth, ctx: Ctx) -> Response:
    """Revoke a key; requests using it fail from this moment on."""
    async with ctx.db.session() as session:
        await api_keys.revoke(
            session, auth.workspace_id, parse_id(key_id, "api_key"), now=ctx.clock.now()
        )
    return Response(status_code=204)
