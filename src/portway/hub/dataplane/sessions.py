"""Live agent sessions on this hub and the idle data channels each keeps in its pool."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import secrets
import time
import uuid
from dataclasses import dataclass, field

from portway.net.framed import ConnectionClosed, FramedConnection
from portway.wire.messages import (
    FEATURE_SERVE,
    Assign,
    AssignError,
    AssignOk,
    Diagnosis,
    OpenChannels,
)

CHANNEL_WAIT_SECONDS = 10.0
ASSIGN_TIMEOUT_SECONDS = 15.0
MAX_GROWN_POOL = 32  # waiters beyond this ask for exactly their own channel

# A channel that would make the idle pool larger than this is closed. Channels asked for in a
# burst keep arriving after it: without a bound they would all sit idle (each a TLS connection,
# a task on the agent), and every later take would be of an untouched one.
MAX_IDLE = 256
# Idle channels beyond this many are closed once they sat unused for `IDLE_TTL` seconds
# (`trim_idle`). The pool follows the load: 50 clients connecting over and over keep about 50
# channels cycling, and a pool cut at 32 closed what came back and opened anew (a TLS handshake
# on both ends) what the next connections took.
KEEP_IDLE = 32
IDLE_TTL = 30.0


class NoChannel(Exception):
    """The session had no idle data channel and none arrived in time."""


@dataclass(eq=False)
class AgentSession:
    """One control session of one agent process. Created by the agent endpoint after a
    successful hello; lives until the control connection ends."""

    agent_id: uuid.UUID
    workspace_id: uuid.UUID
    agent_name: str
    control: FramedConnection
    features: frozenset[str]
    pool_size: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    token_hash: str = ""
    revision: int = 0
    targets: dict[str, tuple[bool, str]] = field(default_factory=dict)
    """Last target health the agent reported: tunnel id -> (ok, message)."""
    _idle: collections.deque[FramedConnection] = field(default_factory=collections.deque)
    """Channels the agent opened for the pool and that carried nothing yet."""
    _reused: collections.deque[FramedConnection] = field(default_factory=collections.deque)
    """Channels back from a connection that ended cleanly."""
    _parked: dict[FramedConnection, float] = field(default_factory=dict)
    """When each idle channel was parked (`time.monotonic()`), for `trim_idle`."""
    _waiters: collections.deque[asyncio.Future[FramedConnection]] = field(
        default_factory=collections.deque
    )
    closed: bool = False

    @property
    def serves(self) -> bool:
        return FEATURE_SERVE in self.features

    @property
    def idle_channels(self) -> int:
        return len(self._idle) + len(self._reused)

    def add_channel(self, channel: FramedConnection, *, reused: bool = False) -> None:
        """Park an authenticated data channel; a waiting pairing gets it at once."""
        if self.closed:
            channel.close()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(channel)
                return
        if self.idle_channels >= max(self.pool_size, MAX_IDLE):
            channel.close()  # the agent opens no replacement for a channel that carried nothing
            return
        channel.on_lost = self._forget
        self._parked[channel] = time.monotonic()
        (self._reused if reused else self._idle).append(channel)

    def readopt(self, transport: asyncio.Transport, rest: bytes) -> bool:
        """Take a data channel whose proxied connection ended cleanly back into the idle pool
        (`Splice.reuse` calls it, offered by `Pairing` when the agent lists `reuse` or
        `reuse_reach`); False when this session cannot use it (closed, pool full)."""
        if self.closed:
            return False
        if self.idle_channels >= max(self.pool_size, MAX_IDLE):
            return False
        self.add_channel(FramedConnection.adopt(transport, rest), reused=True)
        return True

    def _forget(self, channel: FramedConnection) -> None:
        self._parked.pop(channel, None)
        for pool in (self._reused, self._idle):
            with contextlib.suppress(ValueError):
                pool.remove(channel)

    def trim_idle(self, now: float) -> int:
        """Close the idle channels beyond `KEEP_IDLE` (or the agent's pool size) that sat unused
        since `now - IDLE_TTL`, the longest unused first; returns how many. Called by the data
        plane every few seconds."""
        closed = 0
        keep = max(self.pool_size, KEEP_IDLE)
        while self.idle_channels > keep:
            # Each pool hands out its newest first, so its oldest is at the left.
            pool = min(
                (p for p in (self._reused, self._idle) if p), key=lambda p: self._parked[p[0]]
            )
            if self._parked[pool[0]] > now - IDLE_TTL:
                break
            channel = pool.popleft()
            del self._parked[channel]
            channel.on_lost = None
            channel.close()
            closed += 1
        return closed

    async def take_channel(self) -> FramedConnection:
        """An idle channel of this session, asking the agent for more when the pool is dry."""
        if self._reused or self._idle:
            # A channel given back by a finished connection (the newest first) before an
            # untouched one: the first use of an untouched one makes the agent open a
            # replacement, which costs a TLS handshake on both ends.
            channel = (self._reused or self._idle).pop()
            channel.on_lost = None
            del self._parked[channel]
            return channel
        waiter: asyncio.Future[FramedConnection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        # One channel for this waiter, and one more to grow the pool: a dry pool means the
        # agent's top-ups (one per assignment) lag the rate of new connections, and every
        # channel opened in advance takes a TLS handshake off a visitor's path.
        grow = 1 if len(self._waiters) < MAX_GROWN_POOL else 0
        with contextlib.suppress(ConnectionClosed):
            self.control.send(OpenChannels(1 + grow))
        try:
            async with asyncio.timeout(CHANNEL_WAIT_SECONDS):
                return await waiter
        except TimeoutError:
            raise NoChannel(f"agent {self.agent_name} opened no data channel in time") from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def close(self) -> None:
        self.closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        self._parked.clear()
        for pool in (self._reused, self._idle):
            while pool:
                pool.popleft().close()
        self.control.close()


async def assign(
    session: AgentSession, message: Assign, *, wait: float = ASSIGN_TIMEOUT_SECONDS
) -> tuple[FramedConnection, AssignOk | AssignError | Diagnosis]:
    """Send `message` on an idle channel of `session` and wait for the agent's answer.

    Retries with another channel when the one taken turns out dead. On `AssignOk` the caller
    detaches the channel and attaches it to its splice before any further await; a
    `Diagnosis` (the answer to `mode: diagnose`) ends the channel, which the caller closes.
    """
    for _attempt in range(3):
        channel = await session.take_channel()
        try:
            channel.send(message)
            async with asyncio.timeout(wait):
                answer = await channel.recv()
        except ConnectionClosed:
            continue
        except TimeoutError:
            channel.abort()
            raise NoChannel(f"agent {session.agent_name} did not answer an assignment") from None
        if isinstance(answer, AssignOk | AssignError | Diagnosis) and answer.conn == message.conn:
            return channel, answer
        channel.abort()
        raise NoChannel(f"agent {session.agent_name} answered an assignment with {answer!r}")
    raise NoChannel(f"agent {session.agent_name}'s data channels keep closing")
