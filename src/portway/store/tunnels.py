"""Tunnels: rows, hub-wide slugs and hub ports, status changes and the stats the data plane adds.

Every mutation here appends its event (`portway.store.events`) in the caller's transaction.
Callers: the `/v1/tunnels` router (create, update, delete), the agents router (an agent's
removal takes its tunnels along), the hub's reaper (expiry) and the data plane (`set_status`,
`add_stats`).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from portway.domain import event_kinds as ev
from portway.domain import tunnel_rules as rules
from portway.errors import Conflict
from portway.store import connections, events, shares
from portway.store.errors import Duplicate, NoSuchRow
from portway.store.models import Tunnel
from portway.store.pages import Page, paginate
from portway.store.refs import by_ref


class HubPortTaken(Duplicate):
    """The hub port asked for already carries another tunnel (of any workspace)."""

    code = "hub_port_taken"


class NoFreeHubPort(Conflict):
    """Every port of the hub's range is taken; the message says how to make room."""

    code = "no_free_hub_port"


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def snapshot(tunnel: Tunnel) -> dict[str, Any]:
    """The tunnel as event payloads carry it (API field names, no derived URLs)."""
    return {
        "id": str(tunnel.id),
        "name": tunnel.name,
        "agentId": str(tunnel.agent_id),
        "target": {"host": tunnel.target_host, "port": tunnel.target_port},
        "protocol": tunnel.protocol,
        "requestedProtocol": tunnel.requested_protocol,
        "detectedProtocol": tunnel.detected_protocol,
        "public": tunnel.public,
        "slug": tunnel.slug,
        "hubPort": tunnel.hub_port,
        "status": tunnel.status,
        "statusReason": tunnel.status_reason,
        "metadata": tunnel.meta,
        "createdAt": iso(tunnel.created_at),
        "updatedAt": iso(tunnel.updated_at),
        "expiresAt": iso(tunnel.expires_at),
    }


def _name_taken_error(name: str) -> Duplicate:
    return Duplicate(
        f"a tunnel named {name!r} already exists in this workspace", code="tunnel_name_taken"
    )


async def _name_taken(
    session: AsyncSession, workspace_id: uuid.UUID, name: str, exclude: uuid.UUID | None = None
) -> bool:
    stmt = select(Tunnel.id).where(Tunnel.workspace_id == workspace_id, Tunnel.name == name)
    if exclude is not None:
        stmt = stmt.where(Tunnel.id != exclude)
    return await session.scalar(stmt) is not None


async def _free_name(
    session: AsyncSession, workspace_id: uuid.UUID, kind: rules.ServiceKind
) -> str:
    name = rules.generated_name(kind)
    while await _name_taken(session, workspace_id, name):
        name = rules.generated_name(kind)
    return name


async def _free_slug(session: AsyncSession, name: str) -> str:
    slug = rules.public_slug(name)
    while await session.scalar(select(Tunnel.id).where(Tunnel.slug == slug)) is not None:
        slug = rules.public_slug(name)
    return slug


async def _allocate_hub_port(session: AsyncSession, port_range: tuple[int, int]) -> int:
    low, high = port_range
    used = set(
        await session.scalars(select(Tunnel.hub_port).where(Tunnel.hub_port.between(low, high)))
    )
    free = [port for port in range(low, high + 1) if port not in used]
    if not free:
        raise NoFreeHubPort(
            f"every port of this hub's range {low}-{high} is taken; "
            "delete a public TCP/UDP tunnel or widen the hub's --port-range"
        )
    # A random free port, not the lowest: a port just released is then unlikely to be handed
    # out again while the data plane is still closing its listener.
    return secrets.choice(free)


async def create(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    agent_id: uuid.UUID,
    target_host: str,
    target_port: int,
    requested_protocol: rules.RequestedProtocol,
    name: str | None,
    public: bool,
    hub_port: int | None,
    port_range: tuple[int, int],
    metadata: dict[str, Any],
    expires_at: datetime | None,
    now: datetime,
) -> Tunnel:
    """Create a tunnel in `connecting` and record `tunnel.created`.

    The caller has checked that the agent belongs to the workspace and that `hub_port` is
    allowed for this tunnel (`rules.check_hub_port`). Raises `Duplicate` (`tunnel_name_taken`),
    `HubPortTaken` or `NoFreeHubPort`. The data plane then pushes it to the agent and promotes
    its status.
    """
    protocol = rules.resolve_protocol(requested_protocol, target_port)
    if name is None:
        name = await _free_name(session, workspace_id, rules.service_kind(protocol, target_port))
    elif await _name_taken(session, workspace_id, name):
        raise _name_taken_error(name)
    if rules.uses_hub_port(protocol, public):
        if hub_port is None:
            hub_port = await _allocate_hub_port(session, port_range)
        elif await session.scalar(select(Tunnel.id).where(Tunnel.hub_port == hub_port)):
            raise HubPortTaken(f"hub port {hub_port} is already taken by another tunnel")
    tunnel = Tunnel(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        agent_id=agent_id,
        name=name,
        target_host=target_host,
        target_port=target_port,
        requested_protocol=requested_protocol,
        protocol=protocol,
        public=public,
        slug=await _free_slug(session, name),
        hub_port=hub_port,
        status="connecting",
        status_reason=None,
        meta=metadata,
        created_at=now,
        updated_at=now,
        expires_at=expires_at,
        active_connections=0,
        total_connections=0,
        bytes_in=0,
        bytes_out=0,
        datagrams_in=0,
        datagrams_out=0,
        datagrams_dropped=0,
    )
    session.add(tunnel)
    await session.flush()
    await _record(session, tunnel, ev.TUNNEL_CREATED, now)
    return tunnel


def _not_found() -> NoSuchRow:
    return NoSuchRow("tunnel not found", code="tunnel_not_found")


async def get(session: AsyncSession, workspace_id: uuid.UUID, ref: str) -> Tunnel:
    """A tunnel of this workspace by id or by name; `NoSuchRow` (`tunnel_not_found`) otherwise."""
    return await by_ref(session, Tunnel, workspace_id, ref, _not_found)


async def list_page(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    status: str | None = None,
    agent_id: uuid.UUID | None = None,
    protocol: str | None = None,
    name: str | None = None,
    limit: int,
    cursor: str | None,
) -> Page[Tunnel]:
    """One page of the workspace's tunnels, newest first, narrowed by the given filters."""
    stmt = select(Tunnel).where(Tunnel.workspace_id == workspace_id)
    if status is not None:
        stmt = stmt.where(Tunnel.status == status)
    if agent_id is not None:
        stmt = stmt.where(Tunnel.agent_id == agent_id)
    if protocol is not None:
        stmt = stmt.where(Tunnel.protocol == protocol)
    if name is not None:
        stmt = stmt.where(Tunnel.name == name)
    return await paginate(session, stmt, Tunnel.created_at, Tunnel.id, limit=limit, cursor=cursor)


async def _record(
    session: AsyncSession, tunnel: Tunnel, kind: str, now: datetime, **fields: Any
) -> None:
    """Append a `tunnel.*` event: the tunnel as the API shows it, plus `fields`."""
    await events.append(
        session, tunnel.workspace_id, kind, tunnel.id, {"tunnel": snapshot(tunnel), **fields}, now
    )


async def _change_status(
    session: AsyncSession, tunnel: Tunnel, status: str, reason: str | None, now: datetime
) -> bool:
    if status == tunnel.status:
        tunnel.status_reason = reason
        return False
    previous = tunnel.status
    tunnel.status, tunnel.status_reason, tunnel.updated_at = status, reason, now
    await _record(session, tunnel, ev.TUNNEL_STATUS_CHANGED, now, previousStatus=previous)
    return True


async def record_updated(
    session: AsyncSession, tunnel: Tunnel, changed: list[str], now: datetime
) -> None:
    """Stamp `updatedAt` and record one `tunnel.updated` naming the API fields that `changed`.

    The one place that event is shaped; callers: `update` and `store.diagnostics.record_probe`.
    """
    tunnel.updated_at = now
    await _record(session, tunnel, ev.TUNNEL_UPDATED, now, changed=changed)


async def update(
    session: AsyncSession,
    tunnel: Tunnel,
    *,
    now: datetime,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
    status: str | None = None,
) -> Tunnel:
    """Apply a user's PATCH: rename, replace metadata, pause or resume.

    Name and metadata changes record one `tunnel.updated`; a status change records one
    `tunnel.status_changed`; fields sent with their current value change nothing. Resuming a
    paused tunnel puts it back in `connecting` until the data plane serves it again; resuming
    a tunnel that is not paused leaves it as it is. Raises `Duplicate` (`tunnel_name_taken`).
    """
    changed: list[str] = []
    if name is not None and name != tunnel.name:
        if await _name_taken(session, tunnel.workspace_id, name, exclude=tunnel.id):
            raise _name_taken_error(name)
        tunnel.name = name
        changed.append("name")
    if metadata is not None and metadata != tunnel.meta:
        tunnel.meta = metadata
        changed.append("metadata")
    if changed:
        await record_updated(session, tunnel, changed, now)
    if status == "paused":
        await _change_status(session, tunnel, "paused", None, now)
    elif status == "active" and tunnel.status == "paused":
        await _change_status(session, tunnel, "connecting", None, now)
    await session.flush()
    return tunnel


async def set_status(
    session: AsyncSession,
    tunnel_id: uuid.UUID,
    status: rules.TunnelStatus,
    reason: str | None,
    *,
    now: datetime,
) -> bool:
    """Record what the data plane observed (`active`, `error` with a reason, `connecting`).

    Called by the data plane when an agent session starts or stops serving a tunnel, or its
    target or hub port fails. A paused tunnel stays paused (only a user resumes it), and a
    deleted one is ignored. Returns True when the status changed, which is also exactly when
    `tunnel.status_changed` was recorded; the caller then pushes the new state to its agents.
    """
    if status == "paused":
        raise ValueError("only a user pauses a tunnel; use update(status='paused')")
    tunnel = await session.get(Tunnel, tunnel_id, with_for_update=True)
    if tunnel is None or tunnel.status == "paused":
        return False
    return await _change_status(session, tunnel, status, reason, now)


async def add_stats(
    session: AsyncSession,
    tunnel_id: uuid.UUID,
    *,
    opened: int = 0,
    closed: int = 0,
    bytes_in: int = 0,
    bytes_out: int = 0,
    last_connection_at: datetime | None = None,
    datagrams_in: int = 0,
    datagrams_out: int = 0,
    datagrams_dropped: int = 0,
) -> None:
    """Add one batch of traffic counters (deltas since the previous batch) to a tunnel.

    Called periodically by the data plane, never per chunk. Every hub node adds its own
    deltas in one UPDATE, so concurrent batches from several nodes add up instead of
    overwriting each other. A node must report a connection's close no earlier than the batch
    with its open; then the sum never dips below zero whatever the interleaving, and the floor
    at zero only repairs faulty input (the floor makes batches order-dependent otherwise).
    """
    active = Tunnel.active_connections + (opened - closed)
    values: dict[Any, Any] = {
        Tunnel.active_connections: case((active < 0, 0), else_=active),
        Tunnel.total_connections: Tunnel.total_connections + opened,
        Tunnel.bytes_in: Tunnel.bytes_in + bytes_in,
        Tunnel.bytes_out: Tunnel.bytes_out + bytes_out,
    }
    if datagrams_in or datagrams_out or datagrams_dropped:
        values[Tunnel.datagrams_in] = Tunnel.datagrams_in + datagrams_in
        values[Tunnel.datagrams_out] = Tunnel.datagrams_out + datagrams_out
        values[Tunnel.datagrams_dropped] = Tunnel.datagrams_dropped + datagrams_dropped
    if last_connection_at is not None:
        values[Tunnel.last_connection_at] = case(
            (
                (Tunnel.last_connection_at.is_(None))
                | (Tunnel.last_connection_at < last_connection_at),
                last_connection_at,
            ),
            else_=Tunnel.last_connection_at,
        )
    await session.execute(sql_update(Tunnel).where(Tunnel.id == tunnel_id).values(values))


async def delete(session: AsyncSession, tunnel: Tunnel, *, now: datetime, reason: str) -> None:
    """Delete a tunnel; its connections and shares go with it (foreign-key cascade).

    Records `connection.deleted` for each connection, `share.revoked` for each share that was
    still usable, then `tunnel.deleted`, all with `reason`. The data plane then closes the
    tunnel's live connections and frees its hub port and URL.
    """
    await connections.forget_for_tunnel(session, tunnel, now=now, reason=reason)
    await shares.forget_for_tunnel(session, tunnel, now=now)
    await _record(session, tunnel, ev.TUNNEL_DELETED, now, reason=reason)
    await session.delete(tunnel)
    await session.flush()


async def delete_for_agent(session: AsyncSession, agent_id: uuid.UUID, *, now: datetime) -> int:
    """Delete the tunnels an agent exposes, before the agent itself is deleted.

    Called by the agents router, so each removal is recorded as an event instead of vanishing
    silently by cascade. Returns how many tunnels went.
    """
    found = await session.scalars(select(Tunnel).where(Tunnel.agent_id == agent_id))
    gone: Sequence[Tunnel] = found.all()
    for tunnel in gone:
        await delete(session, tunnel, now=now, reason=ev.REASON_AGENT_DELETED)
    return len(gone)


async def delete_expired(session: AsyncSession, *, now: datetime, limit: int = 100) -> int:
    """Delete up to `limit` tunnels whose `expiresAt` has passed; returns how many.

    Each records `tunnel.expired`, then goes like a deleted one (`tunnel.deleted`, reason
    `expired`). Called by the hub's reaper on a timer; it calls again while a full batch came
    back.
    """
    stmt = (
        select(Tunnel)
        .where(Tunnel.expires_at.is_not(None), Tunnel.expires_at <= now)
        .order_by(Tunnel.expires_at)
        .limit(limit)
    )
    gone = (await session.scalars(stmt)).all()
    for tunnel in gone:
        await _record(session, tunnel, ev.TUNNEL_EXPIRED, now)
        await delete(session, tunnel, now=now, reason=ev.REASON_EXPIRED)
    return len(gone)
