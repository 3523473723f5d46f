"""Connections: a tunnel brought to an agent's localhost (the API twin of `portway reach`).

The router creates and deletes them; the data plane reads them to tell reaching agents what to
bind, and reports the outcome with `set_status` (`pending` → `bound` or `error`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final, Literal, get_args

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portway.domain import event_kinds as ev
from portway.store import events
from portway.store.errors import Duplicate, NoSuchRow
from portway.store.models import Connection, Tunnel
from portway.store.pages import Page, paginate

ConnectionStatus = Literal["pending", "bound", "error"]
STATUSES: Final = get_args(ConnectionStatus)
LOCAL_HOST: Final = "localhost"


class LocalPortTaken(Duplicate):
    """The agent already binds this local port for another connection (raised by `create`);
    `details` name that connection and its tunnel."""

    code = "local_port_taken"

    def __init__(self, message: str, existing: Connection) -> None:
        details = {"connectionId": str(existing.id), "tunnelId": str(existing.tunnel_id)}
        super().__init__(message, details=details)
        self.existing = existing


def snapshot(connection: Connection) -> dict[str, Any]:
    return {
        "id": str(connection.id),
        "tunnelId": str(connection.tunnel_id),
        "agentId": str(connection.agent_id),
        "localHost": connection.local_host,
        "localPort": connection.local_port,
        "status": connection.status,
        "statusReason": connection.status_reason,
        "createdAt": connection.created_at.isoformat(),
    }


async def create(
    session: AsyncSession, tunnel: Tunnel, *, agent_id: uuid.UUID, local_port: int, now: datetime
) -> Connection:
    """Ask `agent_id` (already checked to be of the tunnel's workspace) to bind `local_port`.

    Starts `pending` and records `connection.created`; the data plane then tells the agent to
    bind and reports back with `set_status`. Raises `LocalPortTaken` when that agent already
    has a connection on the port.
    """
    existing = await session.scalar(
        select(Connection).where(
            Connection.agent_id == agent_id, Connection.local_port == local_port
        )
    )
    if existing is not None:
        raise LocalPortTaken(
            f"this agent already binds localhost:{local_port} for another connection; "
            "pass a different localPort",
            existing,
        )
    connection = Connection(
        id=uuid.uuid4(),
        workspace_id=tunnel.workspace_id,
        tunnel_id=tunnel.id,
        agent_id=agent_id,
        local_host=LOCAL_HOST,
        local_port=local_port,
        status="pending",
        status_reason=None,
        created_at=now,
        updated_at=now,
    )
    session.add(connection)
    await session.flush()
    await events.append(
        session,
        tunnel.workspace_id,
        ev.CONNECTION_CREATED,
        connection.id,
        {"connection": snapshot(connection)},
        now,
    )
    return connection


async def get(session: AsyncSession, tunnel: Tunnel, connection_id: uuid.UUID) -> Connection:
    """A connection of `tunnel`; `NoSuchRow` (`connection_not_found`) for any other id
    (including other tunnels')."""
    found = await session.scalar(
        select(Connection).where(Connection.id == connection_id, Connection.tunnel_id == tunnel.id)
    )
    if found is None:
        raise NoSuchRow("connection not found", code="connection_not_found")
    return found


async def list_page(
    session: AsyncSession, tunnel: Tunnel, *, limit: int, cursor: str | None
) -> Page[Connection]:
    """A page of the tunnel's connections, newest first (the API's connection listing)."""
    stmt = select(Connection).where(Connection.tunnel_id == tunnel.id)
    return await paginate(
        session, stmt, Connection.created_at, Connection.id, limit=limit, cursor=cursor
    )


async def delete(
    session: AsyncSession, connection: Connection, *, now: datetime, reason: str
) -> None:
    """Remove a connection and record `connection.deleted`; the agent then stops listening."""
    await events.append(
        session,
        connection.workspace_id,
        ev.CONNECTION_DELETED,
        connection.id,
        {"connection": snapshot(connection), "reason": reason},
        now,
    )
    await session.delete(connection)
    await session.flush()


async def forget_for_tunnel(
    session: AsyncSession, tunnel: Tunnel, *, now: datetime, reason: str
) -> None:
    """Record `connection.deleted` for each connection of a tunnel that is being deleted.

    The rows themselves go by foreign-key cascade with the tunnel.
    """
    found = await session.scalars(select(Connection).where(Connection.tunnel_id == tunnel.id))
    for connection in found.all():
        await events.append(
            session,
            connection.workspace_id,
            ev.CONNECTION_DELETED,
            connection.id,
            {"connection": snapshot(connection), "reason": reason},
            now,
        )


async def delete_for_agent(session: AsyncSession, agent_id: uuid.UUID, *, now: datetime) -> int:
    """Delete the connections an agent receives, before the agent itself is deleted."""
    found = (await session.scalars(select(Connection).where(Connection.agent_id == agent_id))).all()
    for connection in found:
        await delete(session, connection, now=now, reason=ev.REASON_AGENT_DELETED)
    return len(found)


async def set_status(
    session: AsyncSession,
    connection_id: uuid.UUID,
    status: ConnectionStatus,
    reason: str | None,
    *,
    now: datetime,
) -> bool:
    """Record whether the reaching agent could bind its local port (`bound`, `error`).

    Called by the data plane; returns False when the connection no longer exists.
    """
    connection = await session.get(Connection, connection_id)
    if connection is None:
        return False
    if (connection.status, connection.status_reason) != (status, reason):
        connection.status, connection.status_reason, connection.updated_at = status, reason, now
    return True
