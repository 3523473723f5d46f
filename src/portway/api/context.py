"""What request handlers need from the hub, handed over once at app creation."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from portway.domain.clock import Clock
from portway.hub.config import HubConfig
from portway.hub.presence import AgentPresence
from portway.store import Database


@dataclass
class ApiContext:
    config: HubConfig
    db: Database
    clock: Clock = field(default_factory=Clock)
    presence: AgentPresence = field(default_factory=AgentPresence)


def get_context(request: Request) -> ApiContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, ApiContext)
    return ctx
