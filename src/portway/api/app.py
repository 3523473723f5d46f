"""Assembles the FastAPI application from its routers; the hub serves it with uvicorn."""

from __future__ import annotations

from fastapi import FastAPI

from portway import __version__
from portway.api import problems
from portway.api.audit import AuditMiddleware
from portway.api.context import ApiContext
from portway.api.routers import (
    agents,
    api_keys,
    audit_log,
    connections,
    diagnostics,
    events,
    health,
    hub_info,
    join,
    shares,
    tunnels,
    webhooks,
    workspaces,
)

DESCRIPTION = """\
Everything the `portway` CLI does, over REST. Authenticate with `Authorization: Bearer pw_…`
(or `X-API-Key: pw_…`). Every error has the shape
`{"error": {"code": "...", "message": "...", "details": ...}}`.
"""


def create_app(ctx: ApiContext) -> FastAPI:
    """Build the API around an already-open store; the caller owns `ctx.db` and closes it."""
    app = FastAPI(
        title="Portway",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.ctx = ctx
    problems.install(app)
    for router in (
        health.router,
        hub_info.router,
        api_keys.router,
        workspaces.router,
        agents.router,
        tunnels.router,
        connections.router,
        diagnostics.router,
        shares.router,
        join.router,
        webhooks.router,
        events.router,
        audit_log.router,
    ):
        app.include_router(router)
    # Records every mutating /v1 call once its response has gone out.
    app.add_middleware(AuditMiddleware, ctx=ctx)
    return app
