"""Audit middleware: one `audit_log` row per mutating `/v1` call, whatever its outcome.

A thin ASGI wrapper installed by `create_app`. It lets the request run untouched, watches the
status code going out (and, for a JSON answer, the `id` of the object it names), and records
the call after the response has been sent. Authentication leaves the caller's `Principal` in
the request state (`portway.api.auth`); a call with no valid key has no workspace to be
audited in and is only logged. A failure to record is logged too: auditing never changes a
response and never turns one into a 500.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portway.api.auth import Principal
from portway.api.context import ApiContext
from portway.store import audit

log = logging.getLogger("portway.api.audit")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Created objects are named in their JSON answer; bigger answers are not buffered to find out.
MAX_BODY_CAPTURE = 64 * 1024


def _object_id(scope: Scope, status: int, body: bytes) -> str | None:
    """The object a call acted on: the `id` in a successful JSON answer, else the last path
    parameter (an id or a name, as the caller gave it)."""
    if 200 <= status < 300 and body:
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("id"), str):
            return str(document["id"])
    params: dict[str, Any] = scope.get("path_params") or {}
    return str(list(params.values())[-1]) if params else None


class AuditMiddleware:
    def __init__(self, app: ASGIApp, ctx: ApiContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in MUTATING
            or not scope["path"].startswith("/v1/")
        ):
            await self.app(scope, receive, send)
            return
        status = 500
        chunks: list[bytes] = []
        capture = False

        async def watch(message: Message) -> None:
            nonlocal status, capture
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = dict(message.get("headers") or [])
                capture = headers.get(b"content-type", b"").startswith(b"application/json")
            elif message["type"] == "http.response.body" and capture:
                chunks.append(message.get("body", b""))
                capture = sum(map(len, chunks)) <= MAX_BODY_CAPTURE
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            await self._record(scope, 500, b"")
            raise
        await self._record(scope, status, b"".join(chunks) if capture else b"")

    async def _record(self, scope: Scope, status: int, body: bytes) -> None:
        principal = (scope.get("state") or {}).get("principal")
        route = scope.get("route")
        template = getattr(route, "path", None)
        if not isinstance(principal, Principal):
            log.info(
                "unauthenticated API call",
                extra={"method": scope["method"], "path": scope["path"], "status": status},
            )
            return
        client = scope.get("client")
        try:
            async with self.ctx.db.session() as session:
                await audit.record(
                    session,
                    principal.workspace_id,
                    actor_type="api_key",
                    actor_id=str(principal.key_id),
                    method=scope["method"],
                    path=scope["path"],
                    route=template if isinstance(template, str) else None,
                    object_id=_object_id(scope, status, body),
                    client_address=str(client[0]) if client else None,
                    status_code=status,
                    now=self.ctx.clock.now(),
                )
        except Exception:
            log.exception("recording an audit entry failed", extra={"path": scope["path"]})
