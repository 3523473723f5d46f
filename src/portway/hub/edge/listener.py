"""The edge's listener: what every client connection shares, and its start and stop.

`Hub` creates `Edge`, calls `start()` after the data plane and `stop()` before it; `start()` also
starts the sweep that cuts share traffic whose share stopped being usable (`LiveShares`, cut.py).
Each accepted connection is an `EdgeConnection` (connection.py) around a `Conversation`
(conversation.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from portway.domain.clock import Clock
from portway.hub.core.access_log import AccessLog
from portway.hub.dataplane.channels import ChannelOpener
from portway.hub.dataplane.traffic import Traffic
from portway.hub.edge.connection import EdgeConnection
from portway.hub.edge.cut import LiveShares
from portway.hub.edge.router import Router
from portway.hub.edge.timeouts import Timeouts


class Edge:
    def __init__(
        self,
        router: Router,
        channels: ChannelOpener,
        traffic: Traffic,
        clock: Clock,
        access: AccessLog,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.router = router
        self.channels = channels
        self.traffic = traffic
        self.clock = clock
        self.access = access
        self.timeouts = timeouts or Timeouts()
        self.live = LiveShares(router)
        self.connections: set[EdgeConnection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: EdgeConnection(self), sock=sock)
        self.live.start()

    async def stop(self) -> None:
        await self.live.stop()
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                conn.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
