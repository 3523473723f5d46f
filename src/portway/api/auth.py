"""API key authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from portway.api.context import ApiContext, get_context
from portway.errors import Forbidden, Unauthorized
from portway.store import api_keys

# auto_error=False: we produce our own 401 in the common error shape.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer pw_…`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: pw_…`")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, its workspace, and whether that workspace administers the hub."""

    key_id: uuid.UUID
    workspace_id: uuid.UUID
    is_admin: bool


async def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_header)],
    ctx: Annotated[ApiContext, Depends(get_context)],
) -> Principal:
    presented = header_key or (bearer.credentials if bearer else None)
    if not presented:
        if request.headers.get("authorization"):
            raise Unauthorized("Authorization header must be 'Bearer <api key>'")
        raise Unauthorized(
            "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            code="missing_api_key",
        )
    async with ctx.db.session() as session:
        found = await api_keys.authenticate(session, presented.strip(), now=ctx.clock.now())
    if found is None:
        raise Unauthorized("API key is invalid or revoked", code="invalid_api_key")
    key, workspace = found
    principal = Principal(key_id=key.id, workspace_id=workspace.id, is_admin=workspace.is_admin)
    # The audit middleware (`portway.api.audit`) records mutating calls under this principal.
    request.state.principal = principal
    return principal


async def require_admin(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden(
            "only keys of the hub's admin workspace may manage workspaces", code="admin_only"
        )
    return principal


Auth = Annotated[Principal, Depends(authenticate)]
Admin = Annotated[Principal, Depends(require_admin)]
Ctx = Annotated[ApiContext, Depends(get_context)]
