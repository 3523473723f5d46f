"""The skeleton of a small asyncio TCP server for tests: listen, run one handler per connection,
close everything on exit.

Subclasses implement `handle`; a client that resets or leaves mid-read ends its handler quietly.
Exit aborts every open connection and waits for its handler, so nothing leaks into a test run
with warnings as errors. Used by `portway.testing.mongo_origin` and the probe tests' fakes.

    async with SomeServer() as server:
        ...  # 127.0.0.1:server.port
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from typing import Self


class StreamServer(abc.ABC):
    """Listens on 127.0.0.1:`port` inside the running event loop; an async context manager."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # Abort rather than cancel: asyncio reads each handler task's result, and a cancelled
        # one would be reported as an error. An aborted transport ends the read loop cleanly.
        for writer in self._connections.values():
            writer.transport.abort()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    @abc.abstractmethod
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Talk to one client; the connection is closed when this returns."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            await self.handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
