"""Local listeners of a reaching agent: each accepted client waits for its stream.

A client's bytes sent before its stream is ready are held (bounded, with backpressure), never
dropped, so client-first protocols (PostgreSQL, HTTP, TLS) work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Callable, Sequence

from portway.net.mux_socket import SocketStream

log = logging.getLogger("portway.agent.reach")

LOCALHOST = ("127.0.0.1", "::1")

# Called with the bind id, a fresh connection id and the local client's socket relay.
Opener = Callable[[str, str, SocketStream], None]


class ReachListener:
    """Listens on `addresses`:`port` for one bind (a tunnel reached from this machine)."""

    def __init__(
        self, bind: str, label: str, addresses: Sequence[str], port: int, opener: Opener
    ) -> None:
        self.bind = bind
        self.label = label
        self.addresses = tuple(addresses)
        self.port = port
        self._opener = opener
        self._servers: list[asyncio.Server] = []

    def _client(self) -> SocketStream:
        client = SocketStream(on_close=self._closed)
        self._opener(self.bind, uuid.uuid4().hex, client)
        return client

    def _closed(self, splice: SocketStream) -> None:
        if splice.result is not None:
            log.info(
                "connection ended abnormally",
                extra={"tunnel": self.label, "reason": splice.result.label},
            )

    async def open(self) -> int:
        """Bind every address (IPv6 is skipped where the host has none); returns the port.

        With port 0 the first address picks a free port and the others use the same one.
        Raises OSError when the port is taken on the first address.
        """
        loop = asyncio.get_running_loop()
        port = self.port
        for index, address in enumerate(self.addresses):
            try:
                server = await loop.create_server(self._client, address, port, backlog=1024)
            except OSError as exc:
                if index == 0:
                    await self.close()
                    raise
                log.debug("skipping address", extra={"address": address, "error": str(exc)})
                continue
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
        self.port = port
        return port

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()


def port_is_free(port: int, addresses: Sequence[str] = LOCALHOST, *, udp: bool = False) -> bool:
    """Whether `port` (TCP, or UDP) can be bound on the first address (IPv4 loopback by
    default)."""
    family = socket.AF_INET6 if ":" in addresses[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as sock:
        try:
            sock.bind((addresses[0], port))
        except OSError:
            return False
    return True


def first_free_port(
    preferred: int, addresses: Sequence[str] = LOCALHOST, tries: int = 100, *, udp: bool = False
) -> int:
    """`preferred` if free, else the next free port above it (within `tries`), else 0."""
    for candidate in range(preferred, min(65536, preferred + tries)):
        if port_is_free(candidate, addresses, udp=udp):
            return candidate
    return 0
