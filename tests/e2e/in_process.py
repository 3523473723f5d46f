"""An in-process hub and agent on the test's loop (real sockets, TLS sessions), so that a test
can look at both ends of a stream, an agent of the previous commit, and a target that accepts
late.

A target that "accepts late" is a listening socket with a backlog of 0 and one connection parked
in its queue: the kernel drops every further SYN, so the agent's dial stays in SYN-SENT until
the test lets it through.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx

from portway.agent.runtime import AgentRuntime
from portway.agent.settings import AgentSettings
from portway.hub.dataplane.channels import dial_message
from portway.hub.dataplane.pairing import _Answer
from portway.hub.dataplane.sessions import AgentSession
from portway.hub.server import Hub
from portway.net.mux import MuxConnection
from portway.net.mux_stream import MuxStream
from portway.testing.hub import running_hub
from portway.wire.control_messages import FEATURE_EARLY_DATA, ControlHello
from portway.wire.messages import encode

WAIT = 20.0  # every wait of these tests has this deadline; none sleeps a fixed time
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def until(condition: Callable[[], Any], what: str) -> Any:
    """Poll `condition` on the test's loop (the hub and agent run on it too) until truthy; the
    value it gave. Fails naming `what` after `WAIT` seconds."""
    try:
        async with asyncio.timeout(WAIT):
            while not (found := condition()):
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None
    return found


async def hash_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Target: read to EOF, answer the SHA-256 of what arrived, close."""
    digest = hashlib.sha256()
    while chunk := await reader.read(1 << 18):
        digest.update(chunk)
    writer.write(digest.hexdigest().encode())
    await writer.drain()
    writer.close()


class LateTarget:
    """A target whose accepts the test holds back (see the module docstring).

    `serve()` accepts and runs `handler` per connection; `hold()` stops accepting and parks a
    connection in the backlog-0 queue, so dials hang; `release()` frees the queue and serves
    again (a held dial gets through on its next SYN retransmission, about a second later)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self.held_at = 0  # `accepted` when the hold began
        self._loop = asyncio.get_running_loop()
        self._filler: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    def serve(self) -> None:
        self._loop.add_reader(self.sock, self._accept)

    def hold(self) -> None:
        self._loop.remove_reader(self.sock)
        self.held_at = self.accepted
        self._filler = socket.create_connection(("127.0.0.1", self.port))  # the queue is full

    def release(self) -> None:
        assert self._filler is not None
        self._filler.close()
        self.sock.listen(128)  # every held dial gets in on its next retransmission
        self.serve()

    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError):
            conn, _ = self.sock.accept()
            self.accepted += 1
            task = self._loop.create_task(self._run(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, conn: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=conn)
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError):
            await self.handler(reader, writer)

    async def aclose(self) -> None:
        self._loop.remove_reader(self.sock)
        self.sock.close()
        if self._filler is not None:
            self._filler.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task


class OlderAgent(AgentRuntime):
    """An agent that does not say it holds early bytes, as a v2 agent of the previous commit."""

    def _hello(self) -> ControlHello:
        hello = super()._hello()
        features = tuple(f for f in hello.features if f != FEATURE_EARLY_DATA)
        return dataclasses.replace(hello, features=features)


@dataclass
class Stack:
    """An in-process hub, its API, and one in-process agent with two sessions."""

    hub: Hub
    api: httpx.AsyncClient
    agent: AgentRuntime
    agent_id: uuid.UUID
    visitors: list[asyncio.StreamWriter] = field(default_factory=list)

    def sessions(self) -> list[AgentSession]:
        assert self.hub.dataplane is not None
        return self.hub.dataplane._sessions.serving(self.agent_id)

    def hub_links(self) -> list[MuxConnection]:
        return [link for session in self.sessions() for link in session.links]

    def agent_links(self) -> list[MuxConnection]:
        assert self.agent._links is not None
        return list(self.agent._links.links)

    def assign_size(self, stream: MuxStream) -> int:
        """Bytes of the `assign` a visitor's stream (the hub's end, before the answer) opened
        with."""
        assert self.hub.dataplane is not None
        answer = cast(_Answer, stream.sink)
        return len(encode(dial_message(answer.route, answer.conn, tls=False)))

    def hub_load(self) -> int:
        """Open streams of the agent's sessions, as the hub's least-loaded choice counts them."""
        return sum(session.load for session in self.sessions())

    @staticmethod
    def assigned(links: list[MuxConnection]) -> list[tuple[MuxConnection, MuxStream]]:
        """The streams the hub opened (even ids; the agent's control streams are odd)."""
        return [(c, s) for c in links for i, s in c.streams.items() if i % 2 == 0]

    async def expose(self, port: int, name: str) -> int:
        body = {"target": f"127.0.0.1:{port}", "name": name, "agentId": str(self.agent_id),
                "public": True}  # fmt: skip
        created = await self.api.post("/v1/tunnels", json=body)
        assert created.status_code == 201, created.text
        return int((await self.status(name, "active"))["hubPort"])

    async def status(self, name: str, status: str) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            while (found := (await self.api.get(f"/v1/tunnels/{name}")).json())["status"] != status:
                await asyncio.sleep(0.02)
        result: dict[str, Any] = found
        return result

    async def visit(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self.visitors.append(writer)
        return reader, writer


@contextlib.asynccontextmanager
async def start_stack(
    tmp_path: Path, agent_class: type[AgentRuntime], *, identity_key: bytes | None = None
) -> AsyncIterator[Stack]:
    async with running_hub(tmp_path / "hub") as hub:
        key = hub.config.admin_key_file.read_text().strip()
        async with httpx.AsyncClient(
            base_url=hub.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=WAIT
        ) as api:
            created = (await api.post("/v1/agents", json={"name": "zrtt"})).json()
            endpoint = (await api.get("/v1/hub")).json()["agentEndpoint"]
            settings = AgentSettings(
                host="127.0.0.1", port=int(endpoint["port"]), token=created["token"],
                tls=bool(endpoint["tls"]), ca_certificate=endpoint.get("caCertificate"),
                ca_fingerprint=endpoint.get("caFingerprint"), sessions=2,
                identity_key=identity_key,
            )  # fmt: skip
            agent = agent_class(settings)
            running = asyncio.get_running_loop().create_task(agent.run())
            stack = Stack(hub, api, agent, uuid.UUID(created["id"]))
            try:
                await until(lambda: len(stack.hub_links()) == 2, "the agent's two sessions")
                yield stack
            finally:
                for writer in stack.visitors:
                    writer.transport.abort()
                await agent.stop()
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
