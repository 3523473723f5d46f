"""The hub's end of every agent connection (a link): a version 2 session whose stream 1 is
the control stream.

`DataPlane` listens with `net.agent_port.listen(links.accept, ...)`. Each accepted link pings
its agent; its stream 1 is read as version 1 message frames and handed to `on_control` (the data
plane's hello handling: a new agent session or a join). A link that opens no control stream in
time is closed. A joined link may open one more stream, to carry the session's control stream
when the link that carried it was lost (also handed to `on_control`); an unjoined link's other
streams are reset.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from portway.hub.dataplane.sessions import AgentSession
from portway.net.framed import FramedConnection
from portway.net.mux import MuxConnection
from portway.net.mux_stream import MuxStream
from portway.net.mux_transport import StreamTransport
from portway.wire.codes import Reason
from portway.wire.frames import MAX_HELLO_PAYLOAD
from portway.wire.mux import MuxSession
from portway.wire.mux_frames import GoAwayCode

log = logging.getLogger("portway.hub.links")

CONTROL_STREAM = 1
SYN_RATE = 2000  # new streams a second an agent's link may open (docs/protocol.md §14)

ControlHandler = Callable[[MuxConnection, FramedConnection], Coroutine[Any, Any, None]]


class AgentLinks:
    def __init__(
        self,
        on_control: ControlHandler,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        *,
        hello_timeout: float,
        heartbeat: tuple[float, float],
    ) -> None:
        self._on_control = on_control
        self._spawn = spawn
        self._hello_timeout = hello_timeout
        self._heartbeat = heartbeat
        self.live: set[MuxConnection] = set()
        self._sessions: dict[MuxConnection, AgentSession] = {}

    def accept(self) -> MuxConnection:
        """The protocol of one accepted version 2 connection (the agent port's factory)."""
        link: MuxConnection

        def on_open(stream: MuxStream, first: memoryview) -> int:
            if stream.id != CONTROL_STREAM and link not in self._sessions:
                stream.reset(Reason.PROTOCOL_ERROR)
                return 0
            control = FramedConnection(max_payload=MAX_HELLO_PAYLOAD)
            StreamTransport(stream, control)
            self._spawn(self._on_control(link, control))
            return 0

        link = MuxConnection(
            MuxSession(client=False, syn_rate=SYN_RATE), on_open,
            lambda exc: self._lost(link), on_made=self._made, name="agent session",
        )  # fmt: skip
        return link

    def join(self, link: MuxConnection, session: AgentSession) -> bool:
        """`link` belongs to `session` from now on; False when the session cannot take it."""
        if link.transport is None or not session.add_link(link):
            return False
        self._sessions[link] = session
        return True

    def session_of(self, link: MuxConnection) -> AgentSession | None:
        return self._sessions.get(link)

    def close_all(self) -> None:
        for link in list(self.live):
            link.close(GoAwayCode.NORMAL, "the hub is stopping")

    def _made(self, link: MuxConnection) -> None:
        self.live.add(link)
        link.start_heartbeat(*self._heartbeat)
        link.loop.call_later(self._hello_timeout, self._check_hello, link)

    def _check_hello(self, link: MuxConnection) -> None:
        if link.transport is not None and link not in self._sessions:
            log.info("closing an agent connection that said no hello in time")
            link.close(GoAwayCode.NORMAL, "no hello in time")

    def _lost(self, link: MuxConnection) -> None:
        self.live.discard(link)
        session = self._sessions.pop(link, None)
        if session is not None:
            session.link_lost(link)
