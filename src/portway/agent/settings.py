"""How an agent process reaches the hub and what it does for it: `AgentSettings`.

Built by the CLI (`portway up`, `expose`, `reach`, `join`) from a profile and flags, and handed
to `AgentRuntime` (`agent.runtime`), which reads it for every (re)connection.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from portway.domain.dial_policy import TargetPolicy
from portway.net import tls


@dataclass
class AgentSettings:
    host: str
    port: int
    token: str
    tls: bool = True
    ca_certificate: str | None = None
    ca_fingerprint: str | None = None
    serve: bool = True  # dial targets of this agent's tunnels
    hold_binds: bool = True  # hold reach binds created through the API
    policy: TargetPolicy = field(default_factory=TargetPolicy)
    sessions: int = 2  # connections to the hub (1 to 8); streams go to the least loaded
    identity_key: bytes | None = None  # the agent's own key (PEM): its end-to-end identity
    direct: bool = True
    """Use the direct path (protocol.md §20): reach tries an exposing agent's candidates, and
    an exposing agent listens for them. False: `reach --relay`, `up --no-direct`."""
    direct_listen: tuple[str, int] = ("", 0)  # the direct port: every address, a free port
    advertise: tuple[str, ...] = ()  # further HOST:PORT candidates (a port forward, say)

    def __post_init__(self) -> None:
        if not 1 <= self.sessions <= 8:
            raise ValueError("sessions must be between 1 and 8")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        if not self.ca_certificate or not self.ca_fingerprint:
            raise ValueError("TLS needs the hub's CA certificate and its pinned fingerprint")
        return tls.client_context(self.ca_certificate, self.ca_fingerprint, check_hostname=False)
