"""What agents found behind tunnels: probe results on the tunnel row, and diagnostics runs.

Callers: the data plane (`record_probe`, when an agent's status carries a probe finding) and
the `/v1/tunnels/{id}/diagnostics` router (`add`, `recent`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from portway.domain import detection
from portway.store.models import Diagnostic, Tunnel
from portway.store.tunnels import record_updated

KEPT_PER_TUNNEL = 50


async def record_probe(
    session: AsyncSession, tunnel_id: uuid.UUID, probe: dict[str, Any], *, now: datetime
) -> bool:
    """Store a probe finding (`probe["protocol"]` plus version, TLS, detail) on its tunnel.

    An `auto` tunnel may switch between http and https (`domain.detection.apply`); an explicit
    protocol is kept and the contradiction stored as `probe["mismatch"]`. Records one
    `tunnel.updated` when what the API shows changed (not when only `probedAt` moved), so the
    data plane and webhooks see it. Returns whether it changed; a deleted tunnel is ignored.
    """
    tunnel = await session.get(Tunnel, tunnel_id, with_for_update=True)
    if tunnel is None:
        return False
    outcome = detection.apply(tunnel.requested_protocol, tunnel.protocol, probe["protocol"])
    stored = {**probe, "mismatch": outcome.mismatch}
    previous = {k: v for k, v in (tunnel.probe or {}).items() if k != "probedAt"}
    same = {k: v for k, v in stored.items() if k != "probedAt"} == previous
    tunnel.probe = {**stored, "probedAt": now.isoformat()}
    if same and tunnel.detected_protocol == probe["protocol"]:
        return False
    changed = ["detectedProtocol"]
    if outcome.protocol != tunnel.protocol:
        tunnel.protocol = outcome.protocol
        changed.append("protocol")
    tunnel.detected_protocol = probe["protocol"]
    await record_updated(session, tunnel, changed, now)
    return True


async def add(
    session: AsyncSession,
    tunnel: Tunnel,
    *,
    ok: bool,
    latency_ms: float | None,
    steps: list[dict[str, Any]],
    detected: dict[str, Any] | None,
    now: datetime,
) -> Diagnostic:
    """Keep one diagnostics run and drop this tunnel's runs beyond the newest 50."""
    row = Diagnostic(
        workspace_id=tunnel.workspace_id, tunnel_id=tunnel.id, created_at=now, ok=ok,
        latency_ms=latency_ms, steps=steps, detected=detected,
    )  # fmt: skip
    session.add(row)
    await session.flush()
    keep = (
        select(Diagnostic.id)
        .where(Diagnostic.tunnel_id == tunnel.id)
        .order_by(Diagnostic.created_at.desc(), Diagnostic.id.desc())
        .limit(KEPT_PER_TUNNEL)
    )
    await session.execute(
        delete(Diagnostic)
        .where(Diagnostic.tunnel_id == tunnel.id, Diagnostic.id.not_in(keep.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return row


async def recent(
    session: AsyncSession, tunnel_id: uuid.UUID, *, limit: int = KEPT_PER_TUNNEL
) -> Sequence[Diagnostic]:
    """A tunnel's kept runs, newest first."""
    rows = await session.scalars(
        select(Diagnostic)
        .where(Diagnostic.tunnel_id == tunnel_id)
        .order_by(Diagnostic.created_at.desc(), Diagnostic.id.desc())
        .limit(limit)
    )
    return rows.all()
