"""The agent port, both ends: the hub's listener that reads each connection's preface, and the
agent's dial of a version 2 session.

:func:`listen` (the hub) accepts a connection, reads its preface and hands a version 2
connection to a :class:`~portway.net.mux.MuxConnection` the caller makes, with the bytes that
followed the preface; anything else gets the frozen version 1 ``refused {bad_version}`` frame
that names the versions this hub speaks (section 10 of ``docs/protocol.md``), and garbage or
silence is closed. :func:`dial` (the agent) opens a connection that writes the version 2
preface before its first frames.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import cast

from portway.net.mux import MuxConnection
from portway.wire.codes import SessionCode
from portway.wire.control_messages import Refused
from portway.wire.frames import MAGIC, PREFACE_SIZE, encode_preface
from portway.wire.messages import encode
from portway.wire.mux_frames import MUX_VERSION

PREFACE_TIMEOUT = 10.0
V2_PREFACE = encode_preface(MUX_VERSION)

SessionFactory = Callable[[], MuxConnection]


class PrefaceReader(asyncio.Protocol):
    """The protocol of a just-accepted agent-port connection until its preface is read.

    Made by :func:`listen` per connection; on a version 2 preface it makes the session's
    protocol with ``factory`` and switches the transport to it."""

    def __init__(self, factory: SessionFactory, timeout: float) -> None:
        self._factory = factory
        self._timeout = timeout
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        self._timer = asyncio.get_running_loop().call_later(self._timeout, transport.abort)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        self._buffer += data
        buffer = self._buffer
        if not MAGIC.startswith(buffer[: len(MAGIC)]):
            self._stop()
            transport.abort()  # not a Portway agent: nothing to say to it
            return
        if len(buffer) < PREFACE_SIZE:
            return
        self._stop()
        version = int.from_bytes(buffer[len(MAGIC) : PREFACE_SIZE], "big")
        if version != MUX_VERSION:
            message = (
                f"this hub speaks protocol version {MUX_VERSION}; the agent speaks {version}: "
                "upgrade the agent to this hub's release"
            )
            transport.write(encode(Refused(SessionCode.BAD_VERSION, message)))
            transport.close()
            return
        session = self._factory()
        transport.set_protocol(session)
        session.connection_made(transport)
        session.feed(buffer[PREFACE_SIZE:])

    def eof_received(self) -> bool:
        self._stop()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def listen(
    factory: SessionFactory,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    preface_timeout: float = PREFACE_TIMEOUT,
) -> asyncio.Server:
    """Hub side: accept agent sessions on ``host:port``; ``factory`` makes each one's protocol.

    A connection whose TLS handshake fails never reaches the reader (nor the factory)."""
    return await asyncio.get_running_loop().create_server(
        lambda: PrefaceReader(factory, preface_timeout), host, port, ssl=ssl_context
    )


async def dial(
    factory: SessionFactory,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> MuxConnection:
    """Agent side: connect to the hub's agent port; ``factory`` must make a connection with
    ``preface=V2_PREFACE``. Returns once TCP (and TLS) is up, without waiting for a reply.
    Raises ``OSError`` when the hub cannot be reached, ``ssl.SSLError`` on a wrong pin."""
    _, connection = await asyncio.get_running_loop().create_connection(
        factory, host, port, ssl=ssl_context,
        server_hostname=server_hostname if ssl_context is not None else None,
    )  # fmt: skip
    return connection
