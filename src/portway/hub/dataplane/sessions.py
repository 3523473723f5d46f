"""Live agent sessions on this hub, each with the version 2 connections (links) it keeps.

An agent's session starts on the link whose control stream said `control_hello` and grows by
the links that joined it (`channel_hello` with the session's secret): every proxied
connection, assignment and diagnostic is a stream on one of them, opened by `open_stream()`
(or `take_channel()`, framed) on the least-loaded link (`docs/protocol.md` §14).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass, field

from cryptography import x509

from portway.errors import Unavailable
from portway.net.framed import ConnectionClosed, FramedConnection
from portway.net.mux import MuxConnection
from portway.net.mux_stream import MuxStream
from portway.net.mux_transport import StreamTransport
from portway.wire.assignment_messages import Assign, AssignError, AssignOk, Diagnosis
from portway.wire.control_messages import FEATURE_SERVE
from portway.wire.mux_errors import MuxError

ASSIGN_TIMEOUT_SECONDS = 15.0
MAX_LINKS = 8  # connections one agent session may keep (`portway up --sessions`, 1 to 8)


class NoChannel(Unavailable):
    """No stream to the agent could be opened (no live link), or it did not answer.

    Raised by `AgentSession.open_stream`, `take_channel` and `assign`.
    """

    code = "no_channel"


@dataclass(eq=False)
class AgentSession:
    """One session of one agent process. Created by admission after a valid `control_hello`;
    lives until its control stream ends (the data plane's `_end_session`)."""

    agent_id: uuid.UUID
    workspace_id: uuid.UUID
    agent_name: str
    control: FramedConnection
    features: frozenset[str]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    token_hash: str = ""
    revision: int = 0
    targets: dict[str, tuple[bool, str]] = field(default_factory=dict)
    """Last target health the agent reported: tunnel id -> (ok, message)."""
    links: list[MuxConnection] = field(default_factory=list)
    """The session's connections."""
    control_changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the agent moved the control stream to another of its connections, when its
    last link was lost and when the session closed: wakes `DataPlane._next_control`."""
    closed: bool = False
    request: x509.CertificateSigningRequest | None = None
    """The agent's certificate request (feature `e2e`), for the certificates issued to it."""
    certificate: str | None = None
    """The agent's certificate, issued at admission and sent in every `welcome`."""
    identity_uri: str | None = None
    """The URI its certificate names it by (its agent, or a guest's share): what an end-to-end
    peer of this session is told to expect (`Assign.peer`). None: no end-to-end reach."""
    candidates: tuple[str, ...] = ()
    """Where this (exposing) agent's direct port may answer, from its last `status` that said
    (feature `direct`); handed to the agents that reach its tunnels end to end."""

    @property
    def serves(self) -> bool:
        return FEATURE_SERVE in self.features

    @property
    def load(self) -> int:
        """Open streams over all links: a new connection goes to the least-loaded session."""
        return sum(len(link.streams) for link in self.links)

    def add_link(self, link: MuxConnection) -> bool:
        """A link joined this session; False (the caller refuses it) when it is closed or
        already has `MAX_LINKS`."""
        if self.closed or len(self.links) >= MAX_LINKS:
            return False
        self.links.append(link)
        return True

    def link_lost(self, link: MuxConnection) -> None:
        if link in self.links:
            self.links.remove(link)
            if not self.links:
                self.control_changed.set()  # nothing is left that could carry a moved control

    def open_stream(self, first: bytes = b"", *, after_reads: bool = False) -> MuxStream:
        """A new stream on the least-loaded live link, ``first`` (an ``assign``) on its SYN
        (framed after the loop's next reads with ``after_reads``: `MuxConnection.open_stream`);
        raises `NoChannel` when no link can open one. Called by `take_channel` and by the
        pairing of a public visitor, which reads the answer off the stream itself."""
        live = [link for link in self.links if link.transport is not None and not link.go_away]
        for link in sorted(live, key=lambda link: len(link.streams)):
            try:
                return link.open_stream(first, after_reads=after_reads)
            except MuxError:
                continue  # at its stream limit or going away: try the next one
        raise NoChannel(f"agent {self.agent_name} has no session that can open a stream")

    def take_channel(self) -> FramedConnection:
        """A new stream (`open_stream`), framed for its first messages (an `assign` and its
        answer); raises `NoChannel`."""
        channel = FramedConnection()
        StreamTransport(self.open_stream(), channel)
        return channel

    def close(self) -> None:
        """End the session: every link says GO_AWAY and closes (their streams reset)."""
        self.closed = True
        self.control_changed.set()
        self.control.close()
        for link in list(self.links):
            link.close()


async def assign(
    session: AgentSession, message: Assign, *, wait: float = ASSIGN_TIMEOUT_SECONDS
) -> tuple[FramedConnection, AssignOk | AssignError | Diagnosis]:
    """Open a stream to `session`'s agent carrying `message` and wait for the agent's answer.

    On `AssignOk` the caller detaches the stream's transport and attaches it to its splice
    before any further await; a `Diagnosis` (the answer to `mode: diagnose`) ends the stream,
    which the caller closes.
    """
    channel = session.take_channel()
    try:
        channel.send(message)  # rides on the stream's SYN, framed at this turn's flush
        async with asyncio.timeout(wait):
            answer = await channel.recv()
    except ConnectionClosed:
        raise NoChannel(f"agent {session.agent_name} reset the stream of an assignment") from None
    except TimeoutError:
        channel.abort()
        raise NoChannel(f"agent {session.agent_name} did not answer an assignment") from None
    if isinstance(answer, AssignOk | AssignError | Diagnosis) and answer.conn == message.conn:
        return channel, answer
    channel.abort()
    raise NoChannel(f"agent {session.agent_name} answered an assignment with {answer!r}")
