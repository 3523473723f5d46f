"""Public TCP listeners on hub ports: every accepted visitor is joined to a stream."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from portway.net.mux_socket import SocketStream

log = logging.getLogger("portway.hub.public")

# Makes the protocol of a new visitor of a tunnel; the data plane dials its stream.
VisitorFactory = Callable[[uuid.UUID], SocketStream]


class PublicPort:
    """One tunnel's hub port. Opened by the data plane when a public TCP tunnel appears."""

    def __init__(self, tunnel_id: uuid.UUID, host: str, port: int, visitor: VisitorFactory) -> None:
        self.tunnel_id = tunnel_id
        self.host = host
        self.port = port
        self._visitor_factory = visitor
        self._server: asyncio.Server | None = None

    def _visitor(self) -> SocketStream:
        return self._visitor_factory(self.tunnel_id)

    async def open(self) -> None:
        """Bind the port; raises OSError (port taken, no permission) for the caller to report."""
        self._server = await asyncio.get_running_loop().create_server(
            self._visitor, self.host, self.port, reuse_address=True, backlog=1024
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
