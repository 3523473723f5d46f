"""FramedConnection on both ends of a real link, a version 2 stream or a plain TCP connection:
messages both ways, the bounds on what a peer can make it hold, and the hand-over of an assigned
link (with the bytes read past its answer) to a splice."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from portway.net.framed import ConnectionClosed, FramedConnection
from portway.net.mux_stream import MuxStream
from portway.net.mux_transport import StreamTransport
from portway.net.splice import Splice
from portway.wire.assignment_messages import Assign, AssignError, AssignMode, AssignOk
from portway.wire.codes import Reason, SessionCode
from portway.wire.control_messages import (
    ControlHello,
    DesiredState,
    Goodbye,
    Ping,
    Pong,
    Protocol,
    TunnelSpec,
    Welcome,
)
from portway.wire.errors import ProtocolError
from portway.wire.frames import MAX_CONTROL_PAYLOAD, MAX_HELLO_PAYLOAD
from portway.wire.messages import encode

from .harness import DEADLINE, Harness, exchange, hash_server, payload, wait_until

HELLO = ControlHello(token="pw_agent_token", software="portway/test", hostname="box", pid=7)
WELCOME = Welcome("s1", "ag1", 5.0, 15.0, "chan-secret", 0)


@dataclass
class Link:
    """The two framed ends of one link."""

    agent: FramedConnection
    hub: FramedConnection

    @property
    def agent_transport(self) -> asyncio.Transport:
        assert self.agent.transport is not None
        return self.agent.transport


MakeLink = Callable[[], Awaitable[Link]]


@pytest.fixture(params=["stream", "tcp"])
async def link(request: pytest.FixtureRequest, harness: Harness) -> AsyncIterator[MakeLink]:
    """Makes links of one kind; each end not detached by the test is aborted at teardown."""
    loop = asyncio.get_running_loop()
    made: list[FramedConnection] = []
    hub_ends: list[FramedConnection] = []

    def hub_end() -> FramedConnection:
        hub_ends.append(FramedConnection())
        made.append(hub_ends[-1])
        return hub_ends[-1]

    def on_open(stream: MuxStream, first: memoryview) -> int:
        StreamTransport(stream, hub_end())
        return 0

    if request.param == "stream":
        session = await harness.session(on_open)
    else:
        server = await loop.create_server(hub_end, "127.0.0.1", 0)
        harness.servers.append(server)
        port = server.sockets[0].getsockname()[1]

    async def make() -> Link:
        agent = FramedConnection()
        made.append(agent)
        count = len(hub_ends)
        if request.param == "stream":
            StreamTransport(session.open_stream(), agent)
        else:
            await loop.create_connection(lambda: agent, "127.0.0.1", port)
        await wait_until(lambda: len(hub_ends) > count, "the hub has its end")
        return Link(agent, hub_ends[count])

    yield make
    for conn in made:
        conn.abort()  # a no-op for a detached end: its splice closes it
    for conn in made:
        await asyncio.wait_for(conn.wait_closed(), DEADLINE)


async def test_messages_cross_both_ways_until_one_side_closes(link: MakeLink) -> None:
    ends = await link()
    ends.agent.send(HELLO)
    assert await ends.hub.recv() == HELLO
    ends.hub.reader.frames.max_payload = MAX_CONTROL_PAYLOAD  # authenticated from here on
    tunnels = (TunnelSpec("t1", "db", Protocol.TCP, "db", 5432),)
    ends.hub.send(WELCOME, DesiredState(1, tunnels))  # one write, two messages
    assert await ends.agent.recv() == WELCOME
    assert await ends.agent.recv() == DesiredState(1, tunnels)
    ends.agent.send(Ping(41))
    assert await ends.hub.recv() == Ping(41)
    ends.hub.send(Pong(41))
    assert await ends.agent.recv() == Pong(41)
    ends.agent.send(Goodbye(SessionCode.CLIENT_EXIT, "bye"))
    await ends.agent.drain()
    assert await ends.hub.recv() == Goodbye(SessionCode.CLIENT_EXIT, "bye")
    ends.hub.close()
    with pytest.raises(ConnectionClosed):
        await ends.agent.recv()
    with pytest.raises(ConnectionClosed):
        ends.hub.send(Ping(1))  # closing: nothing more goes out
    ends.agent.close()
    await ends.agent.wait_closed()
    await ends.hub.wait_closed()


async def test_only_one_task_may_wait_for_a_message(link: MakeLink) -> None:
    ends = await link()
    first = asyncio.get_running_loop().create_task(ends.hub.recv())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already waiting"):
        await ends.hub.recv()
    ends.agent.send(Ping(3))
    assert await first == Ping(3)


async def test_an_oversized_hello_is_refused_before_its_payload_arrives(link: MakeLink) -> None:
    ends = await link()
    # Only the header is ever sent: the reader must decide from it alone.
    ends.agent_transport.write((MAX_HELLO_PAYLOAD + 1).to_bytes(4, "big") + b"\x01")
    with pytest.raises(ProtocolError) as info:
        await ends.hub.recv()
    assert info.value.code == "frame_too_large"


async def test_an_unread_link_stops_reading_at_a_bound(link: MakeLink) -> None:
    ends = await link()
    flood = [Ping(i) for i in range(20_000)]  # about 300 KB of frames
    ends.agent.send(HELLO, *flood)
    hub = ends.hub
    await wait_until(
        lambda: hub.transport is not None and not hub.transport.is_reading(),
        "the hub stops reading the flood",
    )
    assert hub.reader.frames.buffered <= MAX_HELLO_PAYLOAD + 256 * 1024
    for message in [HELLO, *flood]:
        assert await hub.recv() == message


class Sink(asyncio.Protocol):
    """What a detached transport is handed to: records what it hears."""

    def __init__(self) -> None:
        self.data = bytearray()

    def data_received(self, data: bytes) -> None:
        self.data += data


async def test_detach_hands_over_the_bytes_read_past_the_answer(link: MakeLink) -> None:
    ends = await link()
    ends.hub.send(Assign("c1", AssignMode.DIAL, "t1", Protocol.TCP, "127.0.0.1", 9))
    assert isinstance(await ends.agent.recv(), Assign)
    answer = encode(AssignOk("c1"))
    # One write: the answer and the stream's first bytes, all read before the answer is pulled.
    ends.agent_transport.write(answer + b"hi!")
    await wait_until(lambda: ends.hub.reader.frames.buffered == len(answer) + 3, "all arrived")
    assert await ends.hub.recv() == AssignOk("c1")
    transport, rest = ends.hub.detach()
    assert rest == b"hi!"
    with pytest.raises(RuntimeError, match="detached"):
        ends.hub.send(Ping(1))  # frames must never leak into the stream
    with pytest.raises(RuntimeError, match="nothing to detach"):
        ends.hub.detach()
    ends.hub.close()  # no longer the hub end's to close
    assert not transport.is_closing()
    await ends.hub.wait_closed()  # returns at once: the transport is the caller's now
    sink = Sink()
    transport.set_protocol(sink)
    ends.agent_transport.write(b" more")
    await wait_until(lambda: bytes(sink.data) == b" more", "the next bytes reach the sink")
    transport.close()


class Hub:
    """A minimal hub for one exposing agent: a visitor on the public port gets a link, which is
    assigned and spliced to the visitor once the agent confirms."""

    def __init__(self, harness: Harness, link: MakeLink, target_port: int) -> None:
        self.harness = harness
        self.link = link
        self.target_port = target_port
        self.agent_splices: list[asyncio.Task[Splice | None]] = []

    async def listen(self) -> int:
        """The tunnel's public port."""
        public = await asyncio.get_running_loop().create_server(self.visitor, "127.0.0.1", 0)
        self.harness.servers.append(public)
        port: int = public.sockets[0].getsockname()[1]
        return port

    def visitor(self) -> asyncio.Protocol:
        splice = Splice()
        self.harness.splices.append(splice)
        self.harness.spawn(self.assign(splice))
        return splice.a

    async def assign(self, splice: Splice) -> None:
        ends = await self.link()
        self.agent_splices.append(self.harness.spawn(expose(self.harness, ends.agent)))
        conn = ends.hub
        conn.send(Assign("c1", AssignMode.DIAL, "t1", Protocol.TCP, "127.0.0.1", self.target_port))
        reply = await conn.recv()
        if isinstance(reply, AssignOk):
            transport, rest = conn.detach()
            splice.attach(splice.b, transport, rest)
        else:
            assert isinstance(reply, AssignError)
            conn.close()
            splice.reset(reply.reason)


async def expose(harness: Harness, channel: FramedConnection) -> Splice | None:
    """The exposing agent's side of one link: wait for assign, dial, confirm, splice."""
    assign = await channel.recv()
    assert isinstance(assign, Assign)
    splice = Splice()
    harness.splices.append(splice)
    loop = asyncio.get_running_loop()
    try:
        await loop.create_connection(splice.connector(splice.b), assign.host, assign.port)
    except ConnectionRefusedError as exc:
        channel.send(AssignError(assign.conn, Reason.TARGET_REFUSED, str(exc)))
        splice.reset(Reason.TARGET_REFUSED)
        return None
    channel.send(AssignOk(assign.conn))  # precedes anything the target already sent
    transport, rest = channel.detach()
    splice.attach(splice.a, transport, rest)
    return splice


async def test_expose_flow_with_early_visitor_bytes_and_server_first_target(
    harness: Harness, link: MakeLink
) -> None:
    up, greeting = payload(3 * 1024 * 1024, 11), b"220 ready\r\n"
    target = await harness.target(hash_server(greeting))  # speaks first, like SMTP or MySQL
    hub = Hub(harness, link, target)
    # The visitor connects and sends everything (and its EOF) while its link is being assigned.
    reader, writer = await harness.connect(await hub.listen())
    assert await exchange(reader, writer, up) == greeting + hashlib.sha256(up).hexdigest().encode()
    (exposing,) = hub.agent_splices
    agent_splice = await exposing
    assert agent_splice is not None
    assert await agent_splice.wait_closed() is None
    assert (agent_splice.bytes_a_to_b, agent_splice.bytes_b_to_a) == (len(up), len(greeting) + 64)
    assert await harness.splices[0].wait_closed() is None


async def test_assign_error_resets_the_visitor_with_the_reason(
    harness: Harness, link: MakeLink
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    hub = Hub(harness, link, closed_port)
    reader, writer = await harness.connect(await hub.listen())
    writer.write(b"hello?")
    with pytest.raises(ConnectionResetError):
        await reader.read()
    assert await harness.splices[0].wait_closed() is Reason.TARGET_REFUSED
    (exposing,) = hub.agent_splices
    assert await exposing is None
