"""Agent identities: a name, a label and a token stored as SHA-256.

Raises `Duplicate` (`agent_name_taken`) from `create` and `update`, `NoSuchRow`
(`agent_not_found`) from `get`.
"""

from __future__ import annotations

import secrets as stdlib_secrets
import string
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portway.domain import secrets
from portway.errors import field_details
from portway.store.errors import Duplicate, NoSuchRow
from portway.store.models import Agent
from portway.store.pages import Page, paginate
from portway.store.refs import by_ref

_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


def generated_name() -> str:
    return "agent-" + "".join(stdlib_secrets.choice(_SUFFIX_ALPHABET) for _ in range(4))


async def _ensure_name_free(
    session: AsyncSession, workspace_id: uuid.UUID, name: str, exclude: uuid.UUID | None = None
) -> None:
    stmt = select(Agent.id).where(Agent.workspace_id == workspace_id, Agent.name == name)
    if exclude is not None:
        stmt = stmt.where(Agent.id != exclude)
    if await session.scalar(stmt) is not None:
        raise Duplicate(
            f"an agent named {name!r} already exists in this workspace", code="agent_name_taken"
        )


async def create(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    name: str | None,
    label: str | None,
    now: datetime,
) -> tuple[Agent, str]:
    """Enrol an agent; returns the row and its plaintext token, which is never stored."""
    if name is None:
        name = generated_name()
        while await session.scalar(
            select(Agent.id).where(Agent.workspace_id == workspace_id, Agent.name == name)
        ):
            name = generated_name()
    else:
        await _ensure_name_free(session, workspace_id, name)
    issued = secrets.issue(secrets.AGENT_TOKEN_PREFIX)
    agent = Agent(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        name=name,
        label=label,
        token_hash=issued.digest,
        token_rotated_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(agent)
    await session.flush()
    return agent, issued.value


def not_found(field: str | None = None) -> NoSuchRow:
    """The error for a missing agent: `agent_not_found`, naming `field` when a request body
    field (`agentId`) named the agent rather than the path."""
    if field is None:
        return NoSuchRow("agent not found", code="agent_not_found")
    return NoSuchRow(
        "no agent with this id in your workspace",
        code="agent_not_found",
        field=field,
        details=field_details(field, "agent not found", "not_found"),
    )


async def get(
    session: AsyncSession, workspace_id: uuid.UUID, ref: str, *, field: str | None = None
) -> Agent:
    """An agent of this workspace by id or by name; `not_found(field)` otherwise."""
    return await by_ref(session, Agent, workspace_id, ref, lambda: not_found(field))


async def list_page(
    session: AsyncSession, workspace_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Page[Agent]:
    stmt = select(Agent).where(Agent.workspace_id == workspace_id)
    return await paginate(session, stmt, Agent.created_at, Agent.id, limit=limit, cursor=cursor)


async def update(
    session: AsyncSession,
    agent: Agent,
    *,
    now: datetime,
    name: str | None = None,
    label: str | None = None,
    clear_label: bool = False,
) -> Agent:
    if name is not None and name != agent.name:
        await _ensure_name_free(session, agent.workspace_id, name, exclude=agent.id)
        agent.name = name
    if label is not None or clear_label:
        agent.label = label
    agent.updated_at = now
    return agent


async def rotate_token(session: AsyncSession, agent: Agent, *, now: datetime) -> str:
    """Replace the token at once; sessions using the old one are refused from now on."""
    issued = secrets.issue(secrets.AGENT_TOKEN_PREFIX)
    agent.token_hash = issued.digest
    agent.token_rotated_at = now
    agent.updated_at = now
    return issued.value


async def delete(session: AsyncSession, agent: Agent) -> None:
    await session.delete(agent)


async def authenticate(session: AsyncSession, presented: str) -> Agent | None:
    """The agent whose current token is `presented`, or None (unknown, rotated or deleted)."""
    if not presented.startswith(secrets.AGENT_TOKEN_PREFIX) or len(presented) > 200:
        return None
    agent = await session.scalar(select(Agent).where(Agent.token_hash == secrets.digest(presented)))
    if agent is None or not secrets.matches(presented, agent.token_hash):
        return None
    return agent
