"""Messages of a data stream's assignment: what the hub asks of it, and the agent's answer.

The hub opens a stream with :class:`Assign` (dial a target, carry a local client's connection,
or diagnose a target); the agent answers :class:`AssignOk` (then the stream carries the
connection's bytes), :class:`AssignError`, or a :class:`Diagnosis`. Frames as in
:mod:`portway.wire.control_messages`, encoded by :mod:`portway.wire.messages`. Sent and read by
the hub's data plane and the agent's runtime (``agent.runtime``, ``agent.assigned``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from portway.wire.codes import Reason
from portway.wire.control_messages import Detected, Protocol, check_port
from portway.wire.message_types import MessageType


class AssignMode(enum.StrEnum):
    DIAL = "dial"  # exposing agent: connect to host:port and splice it to this channel
    REACH = "reach"  # reaching agent: this channel carries your local connection ``conn``
    DIAGNOSE = "diagnose"  # exposing agent: check the target step by step, answer `Diagnosis`


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
    peer: str | None = None
    """End-to-end reach (feature ``e2e``, ``docs/protocol.md`` §19): the URI the other agent's
    certificate must name. Present, the stream's bytes after ``assign_ok`` are TLS records
    between the two agents, this one the server for a dial and the client for a reach."""
    candidates: tuple[str, ...] | None = None
    """A reach with ``peer`` only: ``host:port`` addresses where the exposing agent's direct
    port may answer, best first (§20). Absent: the tunnel has no direct path now."""

    def __post_init__(self) -> None:
        check_port(self.port)


@dataclass(frozen=True, slots=True)
class DirectOpen:
    """Reaching agent → exposing agent, the first frame of a direct connection (§20): the TLS
    client hello of an end-to-end reach of ``tunnel`` follows it at once."""

    TYPE: ClassVar[MessageType] = MessageType.DIRECT_OPEN
    tunnel: str
    conn: str


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
