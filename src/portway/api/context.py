"""What request handlers need from the hub, handed over once at app creation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import Request

from portway.domain.clock import Clock
from portway.domain.detection import Report
from portway.hub.core.config import HubConfig
from portway.hub.core.presence import AgentPresence
from portway.hub.dataplane.endpoint import AgentEndpoint
from portway.store import Database


@dataclass
class ApiContext:
    config: HubConfig
    db: Database
    clock: Clock = field(default_factory=Clock)
    presence: AgentPresence = field(default_factory=AgentPresence)
    agent_endpoint: AgentEndpoint | None = None
    # Diagnoses a tunnel through its agent (the data plane's `Diagnostics.run`); None when the
    # API runs without a data plane, as in some tests.
    diagnose: Callable[[uuid.UUID], Awaitable[Report]] | None = None
    # Called after a share's revocation is committed: the edge's share cache forgets its rows
    # so the very next request through this hub is refused.
    share_revoked: Callable[[], None] = lambda: None
    # Set by `Hub.stop()` before the API stops: long-lived responses (the event stream) end.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


def get_context(request: Request) -> ApiContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, ApiContext)
    return ctx
