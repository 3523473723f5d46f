"""`/v1/tunnels/{tunnel}/diagnostics`: test the real path hub → agent → target, keep the runs.

`portway check NAME` is the CLI twin. A run is answered by the exposing agent over one of its
data channels (`hub.dataplane.diagnostics`); what fails along the way is a step of the result,
not an HTTP error, so a script reads one shape whatever went wrong.
"""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter

from portway.api.auth import Auth, Ctx
from portway.api.diagnostic_schemas import DetectionOut, DiagnosticList, DiagnosticOut, StepOut
from portway.api.problems import responses
from portway.api.routers.tunnels import TunnelRef
from portway.errors import Unavailable
from portway.store import diagnostics, tunnels
from portway.store.models import Diagnostic

router = APIRouter(prefix="/v1/tunnels", tags=["diagnostics"])


def diagnostic_out(row: Diagnostic) -> DiagnosticOut:
    return DiagnosticOut(
        id=row.id,
        tunnel_id=row.tunnel_id,
        created_at=row.created_at,
        ok=row.ok,
        latency_ms=row.latency_ms,
        steps=[StepOut.model_validate(step) for step in row.steps],
        detected=None if row.detected is None else DetectionOut.model_validate(row.detected),
    )


@router.post(
    "/{tunnel_ref}/diagnostics",
    status_code=201,
    response_model=DiagnosticOut,
    responses=responses(503),
)
async def run_diagnostics(tunnel_ref: TunnelRef, auth: Auth, ctx: Ctx) -> DiagnosticOut:
    """Diagnose a tunnel now: the agent session, DNS as the exposing agent resolves the target,
    TCP connect, TLS where the protocol uses it, the protocol handshake, and the round trip.

    Answers within about 30 s whatever the target does; an offline agent or a closed port is
    a failed step, not an error. The last 50 runs of each tunnel are kept.
    """
    async with ctx.db.session() as session:
        tunnel = await tunnels.get(session, auth.workspace_id, tunnel_ref)
    if ctx.diagnostics is None:
        raise Unavailable("this hub runs without a data plane", code="no_data_plane")
    report = await ctx.diagnostics.run(tunnel.id)
    async with ctx.db.session() as session:
        tunnel = await tunnels.get(session, auth.workspace_id, str(tunnel.id))
        row = await diagnostics.add(
            session, tunnel, ok=report.ok, latency_ms=report.latency_ms,
            steps=[dataclasses.asdict(step) for step in report.steps],
            detected=report.detected, now=ctx.clock.now(),
        )  # fmt: skip
        return diagnostic_out(row)


@router.get("/{tunnel_ref}/diagnostics", response_model=DiagnosticList, responses=responses())
async def list_diagnostics(tunnel_ref: TunnelRef, auth: Auth, ctx: Ctx) -> DiagnosticList:
    """The tunnel's last 50 diagnostics runs, newest first."""
    async with ctx.db.session() as session:
        tunnel = await tunnels.get(session, auth.workspace_id, tunnel_ref)
        rows = await diagnostics.recent(session, tunnel.id)
        return DiagnosticList(items=[diagnostic_out(row) for row in rows])
