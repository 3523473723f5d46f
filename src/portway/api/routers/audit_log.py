"""`/v1/audit-log`: every mutating API call of the workspace, successful or not.

Entries are written by `portway.api.audit`. Admin keys see their own workspace's log too,
never another's.
"""

from __future__ import annotations

from fastapi import APIRouter

from portway.api.auth import Auth, Ctx
from portway.api.problems import responses
from portway.api.schemas import Limit, Page
from portway.api.webhook_schemas import AuditEntryOut
from portway.store import audit

router = APIRouter(prefix="/v1/audit-log", tags=["audit log"])


@router.get("", response_model=Page[AuditEntryOut], responses=responses())
async def list_audit_log(
    auth: Auth, ctx: Ctx, limit: Limit = 50, cursor: str | None = None
) -> Page[AuditEntryOut]:
    """Who changed what, from where, and how it ended (status code), newest first.

    One entry per POST, PUT, PATCH and DELETE under `/v1` made with a key of this workspace,
    including refused ones (404, 409, 422).
    """
    async with ctx.db.session() as session:
        page = await audit.list_page(session, auth.workspace_id, limit=limit, cursor=cursor)
    items = [
        AuditEntryOut(
            id=entry.id,
            at=entry.created_at,
            actor_type=entry.actor_type,
            actor_id=entry.actor_id,
            method=entry.method,
            path=entry.path,
            route=entry.route,
            object_id=entry.object_id,
            client_address=entry.client_address,
            status_code=entry.status_code,
        )
        for entry in page.items
    ]
    return Page[AuditEntryOut](items=items, next_cursor=page.next_cursor)
