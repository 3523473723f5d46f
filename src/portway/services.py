"""What the REST API needs from the rest of the hub, as small interfaces both sides import.

The API holds these in its `ApiContext` (`api/context.py`) and never imports the hub; the hub's
composition root (`hub/server.py`) hands it the hub's own objects, which satisfy them as they
are: the configuration, the agents' presence, the data plane's diagnostics, the edge's share
cache, the SSRF guard for webhook URLs. Tests hand the API the same objects, or their own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Protocol

from portway.domain.addresses import HostPort
from portway.domain.detection import Report


class HubSettings(Protocol):
    """The hub's configuration values request handlers read (`HubConfig` is one)."""

    @property
    def api_url(self) -> str: ...

    @property
    def agent_listen(self) -> HostPort: ...

    @property
    def edge_listen(self) -> HostPort: ...

    @property
    def port_range(self) -> tuple[int, int]: ...

    @property
    def public_domain(self) -> str: ...


class Presence(Protocol):
    """How many live sessions an agent holds on this hub (`AgentPresence`)."""

    def sessions(self, agent_id: uuid.UUID) -> int: ...


class Diagnoser(Protocol):
    """Runs a tunnel's diagnostic through its agent (the data plane's `Diagnostics`)."""

    async def run(self, tunnel_id: uuid.UUID) -> Report: ...


class ShareRevocations(Protocol):
    """Told after a share's revocation is committed (the edge's `ShareCache`), so the very next
    request through this hub is refused."""

    def forget(self) -> None: ...


class UrlGuard(Protocol):
    """Says whether the hub may send requests to a URL now (`hub.egress.Guard`); raises an
    invalid-input error naming why not."""

    async def check(self, url: str) -> None: ...


@dataclass(frozen=True, slots=True)
class AgentEndpoint:
    """Where agents connect and the CA they pin (None for both with `--agent-tls off`); made
    by the data plane when its agent port listens, shown by `GET /v1/hub` and join links."""

    host: str
    port: int
    tls: bool
    ca_fingerprint: str | None
    ca_certificate: str | None

    def on_port(self, port: int) -> AgentEndpoint:
        return replace(self, port=port)
