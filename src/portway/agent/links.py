"""An agent's connections to the hub (links): version 2 sessions, stream 1 of each its control
stream.

`AgentRuntime` opens the first link with `open(control_hello)` and reads the `welcome` on its
control stream; `keep()` then holds the further links the settings ask for (`--sessions`,
default 2) joined to that session, redialling a lost one at once. When the link that carries the
control stream is lost, `move_control()` opens a new control stream on one that is still up.
Every stream the hub opens on any link (an assignment) goes to `on_stream` with its first
message, read off the stream's first bytes (`Opening`); the bytes after it wait in the stream.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

from portway.net import agent_port
from portway.net.framed import ConnectionClosed, FramedConnection
from portway.net.mux import MuxConnection
from portway.net.mux_opening import FirstMessage
from portway.net.mux_stream import MuxStream
from portway.net.mux_transport import StreamTransport
from portway.wire.codes import Reason
from portway.wire.control_messages import ChannelHello, Refused, Welcome
from portway.wire.errors import ProtocolError
from portway.wire.frames import MAX_CONTROL_PAYLOAD
from portway.wire.messages import Message, encode
from portway.wire.mux import MuxSession
from portway.wire.mux_errors import MuxError
from portway.wire.mux_frames import GoAwayCode

log = logging.getLogger("portway.agent.links")

StreamHandler = Callable[[MuxStream, Message], None]

CONNECT_TIMEOUT = 10.0
STREAMS_FROM_HUB = 65_536
"""Open streams a link accepts from the hub: every connection to a target this agent exposes,
and every local client of a reach, is one. The hub is authenticated and paces itself (its own
SYN limits, the sockets it accepts), so this only catches a runaway; the multiplexer's default
(4,096, for streams from an unauthenticated side) would cap a busy agent at 8,192 connections."""
RETRY_SECONDS = 0.5  # between attempts to reopen a lost link
LINK_ERRORS = (OSError, ssl.SSLError, ConnectionClosed, ProtocolError, TimeoutError)


class HubLinks:
    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        on_stream: StreamHandler,
    ) -> None:
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._on_stream = on_stream
        self.links: list[MuxConnection] = []
        self._changed = asyncio.Event()
        self._closed = False

    async def open(self, hello: Message) -> tuple[MuxConnection, FramedConnection]:
        """Dial a link and send `hello` on its control stream (on the SYN: no round trip);
        the caller reads the answer from the returned control channel."""

        def on_open(stream: MuxStream, first: memoryview) -> int:
            Opening(stream, self._on_stream)
            return 0  # the SYN's bytes go to the opening reader

        def make() -> MuxConnection:
            return MuxConnection(
                MuxSession(client=True, max_streams=STREAMS_FROM_HUB), on_open,
                lambda exc: self._lost(link), preface=agent_port.V2_PREFACE, name="hub session",
            )  # fmt: skip

        async with asyncio.timeout(CONNECT_TIMEOUT):
            link = await agent_port.dial(
                make, self._host, self._port, ssl_context=self._ssl,
                server_hostname=self._host if self._ssl else None,
            )  # fmt: skip
        self.links.append(link)
        control = FramedConnection(max_payload=MAX_CONTROL_PAYLOAD)
        StreamTransport(link.open_stream(encode(hello)), control)
        return link, control

    async def keep(self, welcome: Welcome, count: int) -> None:
        """Hold `count` links (the first one included) joined to the session `welcome` opened,
        reopening a lost one at once and then every `RETRY_SECONDS`; returns when the hub no
        longer knows the session. Runs as a task of the session; cancelled when it ends."""
        hello = ChannelHello(session=welcome.session, secret=welcome.channel_secret)
        beat = (welcome.heartbeat_interval, welcome.heartbeat_timeout)
        while not self._closed:
            if len(self.links) >= count:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                link, control = await self.open(hello)
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    answer = await control.recv()
            except LINK_ERRORS as exc:
                log.info("cannot open a further session to the hub", extra={"error": str(exc)})
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if isinstance(answer, Welcome):
                link.start_heartbeat(*beat)
                continue
            link.close()
            if isinstance(answer, Refused):
                log.info("the hub refused a further session", extra={"reason": answer.message})
                return
            await asyncio.sleep(RETRY_SECONDS)

    async def move_control(self, welcome: Welcome) -> FramedConnection | None:
        """A new control stream on a link that is still up, after the one that carried it was
        lost; None when no link can take it (the session then starts over)."""
        hello = ChannelHello(session=welcome.session, secret=welcome.channel_secret)
        for link in list(self.links):
            if link.transport is None or link.go_away is not None:
                continue
            try:
                stream = link.open_stream(encode(hello))
            except MuxError:
                continue
            control = FramedConnection(max_payload=MAX_CONTROL_PAYLOAD)
            StreamTransport(stream, control)
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    answer = await control.recv()
            except LINK_ERRORS:
                continue
            if isinstance(answer, Welcome):
                return control
            control.close()
        return None

    def local_address(self) -> str | None:
        """The address this machine reaches the hub from (its first link's), if one is up."""
        for link in self.links:
            if link.transport is not None:
                return str(link.transport.get_extra_info("sockname")[0])
        return None

    def close(self) -> None:
        """Say GO_AWAY on every link and close it (the agent is leaving or the session ended)."""
        self._closed = True
        for link in list(self.links):
            link.close(GoAwayCode.NORMAL, "the agent is leaving")
        self._changed.set()

    def _lost(self, link: MuxConnection) -> None:
        if link in self.links:
            self.links.remove(link)
        self._changed.set()


class Opening(FirstMessage):
    """A stream the hub opened, until its first message (an `assign`) is read; then `on_stream`
    gets both, the stream's further bytes held in it (uncredited) for the sink that follows."""

    __slots__ = ("_on_stream",)

    def __init__(self, stream: MuxStream, on_stream: StreamHandler) -> None:
        self._on_stream = on_stream
        super().__init__(stream)

    def message_received(self, message: Message) -> None:
        self._on_stream(self.stream, message)

    def ended(self, reason: Reason | None) -> None:
        if reason is None:  # the hub finished the stream without saying what it is for
            self.stream.reset(Reason.CLOSED)
