"""Messages of the control stream: the session handshake, then the control session itself.

Each is a frozen dataclass carried in one frame whose type byte is its ``TYPE``
(:mod:`portway.wire.message_types`); :mod:`portway.wire.messages` encodes and decodes them. The
agent's runtime and links send and read them on a session's control stream, the hub's data
plane on the other end. See ``docs/protocol.md`` for who sends which message when.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from portway.wire.codes import Reason, SessionCode
from portway.wire.message_types import MessageType


class Protocol(enum.StrEnum):
    """What a proxied connection carries; decides stream or datagram framing after assignment."""

    TCP = "tcp"
    UDP = "udp"
    HTTP = "http"
    HTTPS = "https"


def check_port(port: int, *, allow_zero: bool = False) -> None:
    """Raise ``ValueError`` for a port out of range (0 passes with ``allow_zero``); the specs'
    ``__post_init__`` call it, here and in :mod:`portway.wire.assignment_messages`."""
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ValueError(f"port {port} is out of range")


# --- handshake (first frame from the agent, first reply from the hub) -------------------------


# What an agent may list in `ControlHello.features`; the hub relies on none it did not list.
FEATURE_SERVE = "serve"  # the session dials targets of its agent's tunnels
FEATURE_BINDS = "binds"  # the session holds the agent's API-created reach binds
# The agent holds the bytes that follow an `assign` until its target takes them, so the hub
# sends a visitor's bytes behind the assign without waiting for `assign_ok` (protocol.md §14).
FEATURE_EARLY_DATA = "early_data"
# The agent sends `control_hello.csr` and takes the certificate `welcome` answers with: its
# identity for end-to-end reach (`docs/protocol.md` §18).
FEATURE_E2E = "e2e"
# With `e2e`: the agent takes part in the direct path (§20): an exposing agent sends
# `status.candidates` and enforces `desired_state.direct`; a reaching agent uses the candidates
# of a reach's `assign`.
FEATURE_DIRECT = "direct"


@dataclass(frozen=True, slots=True)
class ControlHello:
    """Agent → hub, first frame of a control session: who I am."""

    TYPE: ClassVar[MessageType] = MessageType.CONTROL_HELLO
    token: str
    software: str = ""  # e.g. "portway/0.1.0"
    hostname: str = ""
    pid: int = 0
    features: tuple[str, ...] = ()  # optional capabilities: the `FEATURE_*` names
    csr: str | None = None  # with `e2e`: a PKCS#10 request (PEM) for the agent's own key


@dataclass(frozen=True, slots=True)
class ChannelHello:
    """Agent → hub, first frame on stream 1 of a further session: join ``session``."""

    TYPE: ClassVar[MessageType] = MessageType.CHANNEL_HELLO
    session: str
    secret: str | None = None  # the welcome's channel_secret: cheap to check, no store lookup
    token: str | None = None  # or the agent token itself

    def __post_init__(self) -> None:
        if (self.secret is None) == (self.token is None):
            raise ValueError("a channel hello carries exactly one of secret and token")


@dataclass(frozen=True, slots=True)
class Welcome:
    """Hub → agent: the control session is accepted (or a further session joined it)."""

    TYPE: ClassVar[MessageType] = MessageType.WELCOME
    session: str
    agent: str  # the agent's id
    heartbeat_interval: float  # seconds between pings from each side
    heartbeat_timeout: float  # silence after which either side drops the session
    channel_secret: str  # what a `ChannelHello` joining this session carries
    pool_size: int  # version 1's idle data channels; always 0 in version 2 (no pool)
    certificate: str | None = None  # answer to `csr`: the agent's certificate (PEM)
    identity_ca: str | None = None  # the CA that signed it, which peers' certificates chain to


@dataclass(frozen=True, slots=True)
class Refused:
    """Hub → agent, instead of welcome (to a control or a channel hello); the hub then closes."""

    TYPE: ClassVar[MessageType] = MessageType.REFUSED
    reason: SessionCode
    message: str = ""
    retry_after: float | None = None  # seconds; absent means "do not retry as is"


# --- control session --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TunnelSpec:
    """One tunnel this agent serves: dial ``host:port`` when assigned."""

    id: str
    name: str
    protocol: Protocol
    host: str
    port: int

    def __post_init__(self) -> None:
        check_port(self.port)


@dataclass(frozen=True, slots=True)
class BindSpec:
    """One local listener this agent holds for reach (``reach`` or ``POST .../connect``)."""

    id: str
    tunnel: str
    name: str
    protocol: Protocol
    addresses: tuple[str, ...]  # e.g. ("127.0.0.1", "::1")
    port: int  # 0: pick a free port

    def __post_init__(self) -> None:
        check_port(self.port, allow_zero=True)


@dataclass(frozen=True, slots=True)
class TunnelCertificate:
    """A certificate for the agent's own key naming one tunnel it exposes (`tunnel`'s host name,
    `docs/protocol.md` §18): what it serves to end-to-end peers reaching that tunnel."""

    tunnel: str
    certificate: str


@dataclass(frozen=True, slots=True)
class DirectGrant:
    """Who may reach one tunnel over the exposing agent's direct port (`docs/protocol.md` §21):
    the identity URIs (agents, guests' shares) the hub gave the tunnel's candidates to."""

    tunnel: str
    peers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DesiredState:
    """Hub → agent: the full set of tunnels and binds, replacing the previous revision."""

    TYPE: ClassVar[MessageType] = MessageType.DESIRED_STATE
    revision: int
    tunnels: tuple[TunnelSpec, ...] = ()
    binds: tuple[BindSpec, ...] = ()
    # With `e2e`: one per tunnel served; absent (not empty) otherwise, so the encoding of a
    # desired state without them is the one every agent knows.
    certificates: tuple[TunnelCertificate, ...] | None = None
    # With `direct`: the tunnels served that some peer may reach directly; absent when none.
    direct: tuple[DirectGrant, ...] | None = None


@dataclass(frozen=True, slots=True)
class Detected:
    """What the agent's protocol probe found behind a target (see :mod:`portway.probe`)."""

    protocol: str  # postgres, mysql, redis, mongodb, http, https or tcp
    version: str | None = None
    tls_subject: str | None = None  # set when the target spoke TLS
    tls_issuer: str | None = None
    tls_not_after: str | None = None  # ISO 8601 UTC
    tls_version: str | None = None
    auth_required: bool = False
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TargetStatus:
    tunnel: str
    ok: bool
    reason: Reason | None = None  # when not ok: target_refused, denied, ...
    message: str = ""
    detected: Detected | None = None  # sent when a protocol probe ran (not every liveness check)


@dataclass(frozen=True, slots=True)
class BindStatus:
    bind: str
    ok: bool
    port: int = 0  # the port actually bound
    message: str = ""

    def __post_init__(self) -> None:
        check_port(self.port, allow_zero=True)


@dataclass(frozen=True, slots=True)
class Status:
    """Agent → hub: target health and bind results, for the given desired-state revision."""

    TYPE: ClassVar[MessageType] = MessageType.STATUS
    revision: int
    targets: tuple[TargetStatus, ...] = ()
    binds: tuple[BindStatus, ...] = ()
    # With `direct`, an exposing agent's: where its direct port may be reached, best first.
    candidates: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Counter:
    tunnel: str
    active: int
    total: int
    bytes_in: int  # towards the target
    bytes_out: int  # from the target


@dataclass(frozen=True, slots=True)
class Counters:
    """Agent → hub: cumulative per-tunnel counters of this session (absolute, not deltas)."""

    TYPE: ClassVar[MessageType] = MessageType.COUNTERS
    items: tuple[Counter, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    """Either side; the other answers with a pong carrying the same id."""

    TYPE: ClassVar[MessageType] = MessageType.PING
    id: int


@dataclass(frozen=True, slots=True)
class Pong:
    TYPE: ClassVar[MessageType] = MessageType.PONG
    id: int


@dataclass(frozen=True, slots=True)
class ReachOpen:
    """Agent → hub: a local client connected to bind ``bind``; assign me a channel for ``conn``."""

    TYPE: ClassVar[MessageType] = MessageType.REACH_OPEN
    bind: str
    conn: str


@dataclass(frozen=True, slots=True)
class ReachReject:
    """Hub → agent: reach connection ``conn`` cannot be served; close the local client."""

    TYPE: ClassVar[MessageType] = MessageType.REACH_REJECT
    conn: str
    reason: Reason
    message: str = ""


@dataclass(frozen=True, slots=True)
class Goodbye:
    """Either side, last frame of a control session; the sender closes after writing it."""

    TYPE: ClassVar[MessageType] = MessageType.GOODBYE
    reason: SessionCode
    message: str = ""
