"""What request handlers need from the hub, handed over once at app creation.

Everything here is an interface from `portway.services` or the store: the API never imports the
hub. `hub/server.py` builds the context from the hub's own objects; tests build it from theirs
(`tests/conftest.py`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fastapi import Request

from portway.domain.clock import Clock
from portway.services import (
    AgentEndpoint,
    Diagnoser,
    HubSettings,
    Presence,
    ShareRevocations,
    UrlGuard,
)
from portway.store import Database


@dataclass
class ApiContext:
    config: HubSettings
    db: Database
    presence: Presence
    url_guard: UrlGuard
    clock: Clock = field(default_factory=Clock)
    agent_endpoint: AgentEndpoint | None = None
    # Diagnoses a tunnel through its agent; None when the API runs without a data plane, as in
    # some tests.
    diagnostics: Diagnoser | None = None
    # The edge's share cache, told once a share's revocation is committed; None without an edge.
    revocations: ShareRevocations | None = None
    # Set by `Hub.stop()` before the API stops: long-lived responses (the event stream) end.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


def get_context(request: Request) -> ApiContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, ApiContext)
    return ctx
