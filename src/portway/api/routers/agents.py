"""`/v1/agents`: agent identities. Tokens are shown once, at creation and rotation."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Response

from portway.api.auth import Auth, Ctx
from portway.api.context import ApiContext
from portway.api.problems import responses
from portway.api.schemas import Label, Limit, Model, Page, SlugName
from portway.store import agents, connections, tunnels
from portway.store.models import Agent

router = APIRouter(prefix="/v1/agents", tags=["agents"])


class AgentCreate(Model):
    name: SlugName | None = None
    label: Label | None = None


class AgentUpdate(Model):
    name: SlugName | None = None
    label: Label | None = None


class AgentOut(Model):
    id: uuid.UUID
    name: str
    label: str | None
    online: bool
    sessions: int
    last_seen_at: datetime | None
    version: str | None
    created_at: datetime
    updated_at: datetime


class AgentCreated(AgentOut):
    token: str


class AgentToken(Model):
    id: uuid.UUID
    token: str


def _out(agent: Agent, ctx: ApiContext) -> AgentOut:
    sessions = ctx.presence.sessions(agent.id)
    return AgentOut(
        id=agent.id,
        name=agent.name,
        label=agent.label,
        online=sessions > 0,
        sessions=sessions,
        last_seen_at=agent.last_seen_at,
        version=agent.version,
        created_at=agent.created_at,
        updated_at=agent.updated_at,
    )


@router.post("", status_code=201, response_model=AgentCreated, responses=responses(409))
async def create_agent(body: AgentCreate, auth: Auth, ctx: Ctx) -> AgentCreated:
    """Enrol an agent. `token` authenticates its sessions and is shown in this response only."""
    async with ctx.db.session() as session:
        agent, token = await agents.create(
            session, auth.workspace_id, name=body.name, label=body.label, now=ctx.clock.now()
        )
        return AgentCreated(**_out(agent, ctx).model_dump(), token=token)


@router.get("", response_model=Page[AgentOut], responses=responses())
async def list_agents(
    auth: Auth, ctx: Ctx, limit: Limit = 50, cursor: str | None = None
) -> Page[AgentOut]:
    async with ctx.db.session() as session:
        page = await agents.list_page(session, auth.workspace_id, limit=limit, cursor=cursor)
    return Page[AgentOut](items=[_out(a, ctx) for a in page.items], next_cursor=page.next_cursor)


@router.get("/{agent_ref}", response_model=AgentOut, responses=responses())
async def get_agent(agent_ref: str, auth: Auth, ctx: Ctx) -> AgentOut:
    """One agent, by id or by name."""
    async with ctx.db.session() as session:
        return _out(await agents.get(session, auth.workspace_id, agent_ref), ctx)


@router.patch("/{agent_ref}", response_model=AgentOut, responses=responses(409))
async def update_agent(agent_ref: str, body: AgentUpdate, auth: Auth, ctx: Ctx) -> AgentOut:
    """Rename or relabel an agent (send `"label": null` to clear the label)."""
    async with ctx.db.session() as session:
        agent = await agents.get(session, auth.workspace_id, agent_ref)
        await agents.update(
            session,
            agent,
            now=ctx.clock.now(),
            name=body.name,
            label=body.label,
            clear_label="label" in body.model_fields_set and body.label is None,
        )
        return _out(agent, ctx)


@router.delete("/{agent_ref}", status_code=204, responses=responses())
async def delete_agent(agent_ref: str, auth: Auth, ctx: Ctx) -> Response:
    """Revoke an agent: its token stops working and the identity is removed.

    The tunnels it exposes and the connections it receives are deleted with it.
    """
    async with ctx.db.session() as session:
        agent = await agents.get(session, auth.workspace_id, agent_ref)
        # Deleted one by one rather than by cascade alone, so each leaves its event behind.
        now = ctx.clock.now()
        await tunnels.delete_for_agent(session, agent.id, now=now)
        await connections.delete_for_agent(session, agent.id, now=now)
        await agents.delete(session, agent)
    return Response(status_code=204)


@router.post("/{agent_ref}/rotate-token", response_model=AgentToken, responses=responses())
async def rotate_agent_token(agent_ref: str, auth: Auth, ctx: Ctx) -> AgentToken:
    """Issue a new token; the old one is refused from now on."""
    async with ctx.db.session() as session:
        agent = await agents.get(session, auth.workspace_id, agent_ref)
        token = await agents.rotate_token(session, agent, now=ctx.clock.now())
        return AgentToken(id=agent.id, token=token)
