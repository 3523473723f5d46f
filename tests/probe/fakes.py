"""Small asyncio servers for the probe tests (silent, banner-sending, a recording relay), the
opener detect() is given, and a MySQL greeting builder.

Each is a `portway.testing.stream_server.StreamServer`: an async context manager listening on
127.0.0.1:`port`, closing every connection it accepted on exit (tests run with warnings as
errors, so nothing may leak).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from portway.probe import Opener
from portway.testing.stream_server import StreamServer


def mariadb_greeting(version: bytes, capabilities: int = 0xFFFE) -> bytes:
    """A MariaDB/MySQL handshake packet (protocol 10) as the server sends it first."""
    payload = (
        b"\x0a" + version + b"\x00" + struct.pack("<I", 7) + b"abcdefgh" + b"\x00"
        + struct.pack("<H", capabilities) + b"\x2d\x02\x00\xff\x81\x15" + b"\x00" * 10
        + b"ijklmnopqrst\x00mysql_native_password\x00"
    )  # fmt: skip
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


def opener(port: int, host: str = "127.0.0.1") -> Opener:
    """What the agent passes to detect(): dial the target afresh on every call."""

    async def open_target() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)

    return open_target


class FakeServer(StreamServer):
    """Accepts connections and runs `converse` on each; records the first bytes each client sent
    (what `received` holds, one entry per connection, b"" for a client that said nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.received)
        self.received.append(b"")
        await self.converse(reader, writer, index)

    async def record(self, reader: asyncio.StreamReader, index: int) -> bytes:
        """Read the next chunk from the client, remembering the first one."""
        data = await reader.read(65536)
        if not self.received[index]:
            self.received[index] = data
        return data

    async def converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int
    ) -> None:
        """Silent: read and never answer, until the client leaves."""
        while await self.record(reader, index):
            pass


class BannerServer(FakeServer):
    """Speaks first, like sshd or an SMTP server, then listens without answering."""

    def __init__(self, banner: bytes, *, delay: float = 0.0) -> None:
        super().__init__()
        self.banner = banner
        self.delay = delay

    async def converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int
    ) -> None:
        await asyncio.sleep(self.delay)
        writer.write(self.banner)
        await writer.drain()
        await super().converse(reader, writer, index)


class RecordingRelay(FakeServer):
    """Relays every connection to 127.0.0.1:`upstream`, recording what the client sent first, to
    prove what a real server was (and was not) sent."""

    def __init__(self, upstream: int) -> None:
        super().__init__()
        self.upstream = upstream

    async def converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)

        async def upstream_to_client() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await up_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()  # the server hung up: so does the relay

        pump = asyncio.create_task(upstream_to_client())
        try:
            while data := await self.record(reader, index):
                up_writer.write(data)
                await up_writer.drain()
        finally:
            up_writer.close()
            with contextlib.suppress(ConnectionError):
                await up_writer.wait_closed()
            await asyncio.gather(pump, return_exceptions=True)
