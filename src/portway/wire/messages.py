"""Control-stream and assignment messages.

Each message is a frozen dataclass carried in one frame (:mod:`portway.wire.frames`) whose type
byte is the class's ``TYPE`` and whose payload is compact JSON of its fields. JSON because these
frames are rare (a handful per session, a few per proxied connection), must stay extensible
(unknown keys are ignored) and readable in a packet capture; the per-byte hot path is a stream's
plain bytes (:mod:`portway.wire.mux`) instead. See ``docs/protocol.md`` for who sends which
message when.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from portway.wire import _json
from portway.wire.codes import Reason, SessionCode
from portway.wire.errors import ProtocolError
from portway.wire.frames import MAX_HELLO_PAYLOAD, Bytes, FrameReader, encode_frame


class MessageType(enum.IntEnum):
    """The frame type byte of each message."""

    CONTROL_HELLO = 0x01
    CHANNEL_HELLO = 0x02
    WELCOME = 0x03
    REFUSED = 0x04
    DESIRED_STATE = 0x10
    STATUS = 0x11
    COUNTERS = 0x12
    PING = 0x13
    PONG = 0x14
    # 0x15 was OPEN_CHANNELS (version 1's pool top-up): reserved, never to be reused.
    REACH_OPEN = 0x16
    REACH_REJECT = 0x17
    GOODBYE = 0x1F
    ASSIGN = 0x20
    ASSIGN_OK = 0x21
    ASSIGN_ERROR = 0x22
    DIAGNOSIS = 0x23


class Protocol(enum.StrEnum):
    """What a proxied connection carries; decides stream or datagram framing after assignment."""

    TCP = "tcp"
    UDP = "udp"
    HTTP = "http"
    HTTPS = "https"


class AssignMode(enum.StrEnum):
    DIAL = "dial"  # exposing agent: connect to host:port and splice it to this channel
    REACH = "reach"  # reaching agent: this channel carries your local connection ``conn``
    DIAGNOSE = "diagnose"  # exposing agent: check the target step by step, answer `Diagnosis`


def _check_port(port: int, *, allow_zero: bool = False) -> None:
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ValueError(f"port {port} is out of range")


# --- handshake (first frame from the agent, first reply from the hub) -------------------------


# What an agent may list in `ControlHello.features`; the hub relies on none it did not list.
FEATURE_SERVE = "serve"  # the session dials targets of its agent's tunnels
FEATURE_BINDS = "binds"  # the session holds the agent's API-created reach binds
# The agent holds the bytes that follow an `assign` until its target takes them, so the hub
# sends a visitor's bytes behind the assign without waiting for `assign_ok` (protocol.md §14).
FEATURE_EARLY_DATA = "early_data"


@dataclass(frozen=True, slots=True)
class ControlHello:
    """Agent → hub, first frame of a control session: who I am."""

    TYPE: ClassVar[MessageType] = MessageType.CONTROL_HELLO
    token: str
    software: str = ""  # e.g. "portway/0.1.0"
    hostname: str = ""
    pid: int = 0
    features: tuple[str, ...] = ()  # optional capabilities: the `FEATURE_*` names


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
        _check_port(self.port)


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
        _check_port(self.port, allow_zero=True)


@dataclass(frozen=True, slots=True)
class DesiredState:
    """Hub → agent: the full set of tunnels and binds, replacing the previous revision."""

    TYPE: ClassVar[MessageType] = MessageType.DESIRED_STATE
    revision: int
    tunnels: tuple[TunnelSpec, ...] = ()
    binds: tuple[BindSpec, ...] = ()


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
        _check_port(self.port, allow_zero=True)


@dataclass(frozen=True, slots=True)
class Status:
    """Agent → hub: target health and bind results, for the given desired-state revision."""

    TYPE: ClassVar[MessageType] = MessageType.STATUS
    revision: int
    targets: tuple[TargetStatus, ...] = ()
    binds: tuple[BindStatus, ...] = ()


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


# --- data channel -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assign:
    """Hub → agent on an idle data channel; after this frame the hub→agent bytes are stream
    (or datagram, for ``protocol == udp``) framing."""

    TYPE: ClassVar[MessageType] = MessageType.ASSIGN
    conn: str
    mode: AssignMode
    tunnel: str
    protocol: Protocol
    host: str
    port: int
    tls_verify: bool | None = None
    """``https`` only: ``false`` when the tunnel's metadata says ``{"tlsVerify": false}``."""

    def __post_init__(self) -> None:
        _check_port(self.port)


@dataclass(frozen=True, slots=True)
class AssignOk:
    """Agent → hub; after this frame the agent→hub bytes are stream (or datagram) framing."""

    TYPE: ClassVar[MessageType] = MessageType.ASSIGN_OK
    conn: str


@dataclass(frozen=True, slots=True)
class AssignError:
    """Agent → hub: the assignment failed (target refused, denied by policy...); channel closes."""

    TYPE: ClassVar[MessageType] = MessageType.ASSIGN_ERROR
    conn: str
    reason: Reason
    message: str = ""


@dataclass(frozen=True, slots=True)
class DiagnosticStep:
    name: str  # dns, tcp, tls, handshake
    status: str  # ok, warn, fail, skip
    ms: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Agent → hub, the answer to ``Assign(mode=diagnose)``; the channel closes after it."""

    TYPE: ClassVar[MessageType] = MessageType.DIAGNOSIS
    conn: str
    steps: tuple[DiagnosticStep, ...]
    elapsed_ms: float  # the agent's own time, so the hub can tell its share of the round trip
    detected: Detected | None = None


Message = (
    ControlHello
    | ChannelHello
    | Welcome
    | Refused
    | DesiredState
    | Status
    | Counters
    | Ping
    | Pong
    | ReachOpen
    | ReachReject
    | Goodbye
    | Assign
    | AssignOk
    | AssignError
    | Diagnosis
)

MESSAGE_CLASSES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        ControlHello,
        ChannelHello,
        Welcome,
        Refused,
        DesiredState,
        Status,
        Counters,
        Ping,
        Pong,
        ReachOpen,
        ReachReject,
        Goodbye,
        Assign,
        AssignOk,
        AssignError,
        Diagnosis,
    )
}


def encode(message: Message) -> bytes:
    """A whole frame for ``message``: header, type byte, JSON payload. Write it as is."""
    return encode_frame(message.TYPE, _json.dumps(message))


def decode(kind: int, payload: bytes) -> Message:
    """Interpret one frame; raises :class:`ProtocolError` for unknown types or bad payloads."""
    cls = MESSAGE_CLASSES.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown frame type 0x{kind:02x}")
    message: Message = _json.loads(cls, payload)
    return message


class MessageReader:
    """Sans-IO reader of messages on one connection (wraps :class:`FrameReader`).

    The owner feeds received bytes, pulls one message at a time with :meth:`next_message`, and
    after pulling ``Assign`` (agent side) or ``AssignOk`` (hub side) takes the stream bytes that
    follow with :meth:`take_rest`.
    """

    def __init__(self, *, max_payload: int = MAX_HELLO_PAYLOAD) -> None:
        self.frames = FrameReader(max_payload=max_payload)
        self._error: ProtocolError | None = None

    def feed(self, data: Bytes) -> None:
        self.frames.feed(data)

    def next_message(self) -> Message | None:
        """The next whole message, or ``None`` until more bytes are fed.

        Raises :class:`ProtocolError`; the reader then stays broken, as :class:`FrameReader` does.
        """
        if self._error is not None:
            raise self._error
        frame = self.frames.next_frame()
        if frame is None:
            return None
        try:
            return decode(frame.kind, frame.payload)
        except ProtocolError as exc:
            self._error = exc
            raise

    def take_rest(self) -> bytes:
        return self.frames.take_rest()
