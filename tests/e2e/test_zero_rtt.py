"""A visitor of a public TCP port costs no round trip (docs/protocol.md §14): its bytes follow the
`assign` with no wait, the exposing agent holds them (within the stream's window, no credit
back) until its target took them, and the hub reads the agent's answer off the stream in
callbacks.

An in-process hub and agent on the test's loop (real sockets, TLS sessions) let the tests look
at both ends of a stream; the last test runs real processes. A target that "accepts late" is a
listening socket with a backlog of 0 and one connection parked in its queue: the kernel drops
every further SYN, so the agent's dial stays in SYN-SENT until the test lets it through.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import socket
import struct
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from portway.agent.runtime import AgentRuntime
from portway.agent.settings import AgentSettings
from portway.hub.dataplane.pairing import Pairing, _Answer
from portway.hub.dataplane.sessions import AgentSession
from portway.hub.server import Hub
from portway.net.mux import MuxConnection
from portway.net.mux_stream import MuxStream
from portway.testing.hub import running_hub
from portway.testing.machines import Machine
from portway.testing.origins import EchoOrigin
from portway.wire.control_messages import FEATURE_EARLY_DATA, ControlHello
from portway.wire.flow import INITIAL_WINDOW
from portway.wire.messages import encode
from portway.wire.mux_sending import HIGH_WATER

from .test_data_plane import expose, tunnel, wait_status

WAIT = 20.0  # every wait below has this deadline; none sleeps a fixed time
MB = 1024 * 1024
READ_MAX = 256 * 1024  # the most one read of a socket hands the hub
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
        return len(encode(Pairing._assign(answer.route, answer.conn, tls=False)))

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
async def start_stack(tmp_path: Path, agent_class: type[AgentRuntime]) -> AsyncIterator[Stack]:
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


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with start_stack(tmp_path, AgentRuntime) as running:
        yield running


@pytest.fixture
async def older(tmp_path: Path) -> AsyncIterator[Stack]:
    async with start_stack(tmp_path, OlderAgent) as running:
        yield running


@pytest.fixture
async def late() -> AsyncIterator[LateTarget]:
    target = LateTarget(hash_reply)
    target.serve()
    yield target
    await target.aclose()


async def test_first_bytes_sent_before_the_target_accepts_arrive_byte_exact(
    stack: Stack, late: LateTarget
) -> None:
    public = await stack.expose(late.port, "late-target")
    late.hold()
    payload = os.urandom(MB)  # four windows: the agent holds one, the hub queues the next
    reader, writer = await stack.visit(public)
    writer.write(payload)
    writer.write_eof()

    ((hub_link, stream),) = await until(lambda: stack.assigned(stack.hub_links()), "the stream")
    session = hub_link.session
    ((_, held),) = await until(
        lambda: [(c, s) for c, s in stack.assigned(stack.agent_links()) if s.id == stream.id],
        "the agent to see the stream",
    )
    window_left = INITIAL_WINDOW - stack.assign_size(stream)

    def holding() -> int:
        return sum(map(len, held._held))  # bytes the agent keeps for a sink not attached yet

    # The agent holds a whole window of the visitor's bytes: credit came back for the assign's
    # own bytes at most (taken when read), none for these, since its target is not connected.
    # The hub holds the visitor's next bytes and stops reading it: backpressure, not buffering.
    await until(lambda: session.send_buffered(stream.id) > HIGH_WATER, "the hub to queue more")
    await until(lambda: holding() >= window_left, "the agent to hold a window")
    assert holding() <= INITIAL_WINDOW
    assert session.send_window(stream.id) == 0
    assert session.send_buffered(stream.id) <= HIGH_WATER + READ_MAX
    assert held.sink is None
    assert late.accepted == late.held_at, "the target accepted nothing meanwhile"

    late.release()
    async with asyncio.timeout(WAIT):
        answer = await reader.read()
    assert answer == hashlib.sha256(payload).hexdigest().encode()
    await until(lambda: not stack.assigned(stack.hub_links()), "the hub to finish the stream")
    await until(lambda: not stack.assigned(stack.agent_links()), "the agent to finish it")


async def test_an_agent_without_early_data_gets_the_visitor_bytes_after_assign_ok(
    older: Stack, late: LateTarget
) -> None:
    public = await older.expose(late.port, "older-agent")
    late.hold()
    payload = os.urandom(MB)
    reader, writer = await older.visit(public)
    writer.write(payload)
    writer.write_eof()
    ((hub_link, stream),) = await until(lambda: older.assigned(older.hub_links()), "the stream")
    answer = cast(_Answer, stream.sink)
    assert not answer.early and answer.source is None
    await until(lambda: answer.visitor.bytes_in > HIGH_WATER, "the visitor's bytes at the hub")
    # The hub holds them (and stops reading) until the agent answers: only the assign is out
    # (its credit may be back already, on the agent's ACK).
    sent = INITIAL_WINDOW - hub_link.session.send_window(stream.id)
    assert sent in (0, older.assign_size(stream))
    assert hub_link.session.send_buffered(stream.id) == 0
    assert answer.visitor.bytes_in <= HIGH_WATER + READ_MAX
    late.release()
    async with asyncio.timeout(WAIT):
        reply = await reader.read()
    assert reply == hashlib.sha256(payload).hexdigest().encode()


async def test_assign_error_resets_the_visitor_and_records_the_target_status(
    stack: Stack,
) -> None:
    target = await asyncio.start_server(hash_reply, "127.0.0.1", 0)
    port = target.sockets[0].getsockname()[1]
    public = await stack.expose(port, "refusing")
    target.close()
    await target.wait_closed()  # nothing listens there any more: the agent's dial is refused
    reader, writer = await stack.visit(public)
    writer.write(b"hello?")
    async with asyncio.timeout(WAIT):
        with pytest.raises(ConnectionResetError):
            await reader.read()
    found = await stack.status("refusing", "error")
    assert "refused" in str(found["statusReason"])
    await until(lambda: not stack.assigned(stack.hub_links()), "the hub to free the stream")
    await until(lambda: not stack.assigned(stack.agent_links()), "the agent to free it")

    # The target is back: the next visitor is served, and its `assign_ok` says so.
    target = await asyncio.start_server(hash_reply, "127.0.0.1", port)
    try:
        reader, writer = await stack.visit(public)
        writer.write(b"back")
        writer.write_eof()
        async with asyncio.timeout(WAIT):
            assert await reader.read() == hashlib.sha256(b"back").hexdigest().encode()
        await stack.status("refusing", "active")
    finally:
        target.close()
        await target.wait_closed()


async def test_visitors_that_leave_before_the_answer_free_their_streams(
    stack: Stack, late: LateTarget
) -> None:
    public = await stack.expose(late.port, "leavers")
    late.hold()
    before = stack.hub_load()
    writers = []
    for _ in range(20):
        _, writer = await stack.visit(public)
        writer.write(b"gone soon" * 1000)
        writers.append(writer)
    await until(lambda: len(stack.assigned(stack.agent_links())) == 20, "20 held streams")
    assert stack.hub_load() == before + 20
    for writer in writers:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # an RST: the visitor is gone, not half-closed
    await until(lambda: stack.hub_load() == before, "the hub to free every stream")
    await until(lambda: not stack.assigned(stack.agent_links()), "the agent to free them")
    # The agent's dials still in flight get through and are closed at once; the tunnel serves.
    late.release()
    await until(lambda: late.accepted >= late.held_at + 21, "the held dials and the filler")
    reader, writer = await stack.visit(public)
    writer.write(b"still served")
    writer.write_eof()
    async with asyncio.timeout(WAIT):
        assert await reader.read() == hashlib.sha256(b"still served").hexdigest().encode()
    await until(lambda: stack.hub_load() == before, "no stream left behind")


def echo_both_ways(port: int, payload: bytes) -> bytes:
    """Send `payload` while reading the echo, from the first byte on (no wait for anything)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:

        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        chunks = []
        while data := sock.recv(1 << 18):
            chunks.append(data)
        sender.join(WAIT)
    return b"".join(chunks)


@pytest.mark.e2e
def test_10_mb_both_ways_through_the_public_port_between_processes(
    machine: Callable[[str], Machine], api: httpx.Client
) -> None:
    with EchoOrigin() as echo:
        expose(machine("zrtt-server"), f"127.0.0.1:{echo.port}", "zrtt-bulk", "--public")
        public = int(wait_status(api, "zrtt-bulk", "active")["hubPort"])
        payload = os.urandom(10 * MB)
        assert echo_both_ways(public, payload) == payload
        for size in (1, 100, 70_000):  # first bytes alone, and more than one DATA frame
            small = os.urandom(size)
            assert echo_both_ways(public, small) == small
        assert tunnel(api, "zrtt-bulk")["status"] == "active"
