from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket

import pytest

from portway.net.framed import ConnectionClosed, FramedConnection, connect, serve
from portway.net.splice import Splice
from portway.wire.codes import Reason, SessionCode
from portway.wire.errors import ProtocolError, UnsupportedVersion
from portway.wire.frames import MAX_CONTROL_PAYLOAD, MAX_HELLO_PAYLOAD, PREFACE, encode_preface
from portway.wire.messages import (
    Assign,
    AssignError,
    AssignMode,
    AssignOk,
    ChannelHello,
    ControlHello,
    DesiredState,
    Goodbye,
    MessageReader,
    Ping,
    Pong,
    Protocol,
    Refused,
    TunnelSpec,
    Welcome,
    encode,
)
from portway.wire.stream import encode_chunks

from .harness import Harness, Tls, exchange, hash_server, payload, wait_until

HELLO = ControlHello(token="pw_agent_token", software="portway/test", hostname="box", pid=7)
WELCOME = Welcome("s1", "ag1", 5.0, 15.0, "chan-secret", 2)


async def closed(conn: FramedConnection) -> None:
    conn.close()
    await conn.wait_closed()


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "tls"])
async def test_control_session_hello_welcome_ping_goodbye(tls_pair: Tls, secure: bool) -> None:
    seen: list[object] = []

    async def control(conn: FramedConnection) -> None:
        hello = await conn.recv()
        seen.append(hello)
        assert conn.version == 1
        conn.reader.frames.max_payload = MAX_CONTROL_PAYLOAD  # authenticated from here on
        conn.send(WELCOME, DesiredState(1, (TunnelSpec("t1", "db", Protocol.TCP, "db", 5432),)))
        while True:
            message = await conn.recv()
            seen.append(message)
            if isinstance(message, Ping):
                conn.send(Pong(message.id))
            elif isinstance(message, Goodbye):
                conn.close()
                return

    server = await serve(control, "127.0.0.1", 0, ssl_context=tls_pair.server if secure else None)
    async with server:
        agent = await connect(
            "127.0.0.1",
            server.port,
            hello=HELLO,
            ssl_context=tls_pair.client if secure else None,
            server_hostname="localhost",
            max_payload=MAX_CONTROL_PAYLOAD,
        )
        assert await agent.recv() == WELCOME
        assert isinstance(await agent.recv(), DesiredState)
        agent.send(Ping(41))
        assert await agent.recv() == Pong(41)
        agent.send(Goodbye(SessionCode.CLIENT_EXIT, "bye"))
        await agent.drain()
        with pytest.raises(ConnectionClosed):
            await agent.recv()
        await closed(agent)
    assert seen == [HELLO, Ping(41), Goodbye(SessionCode.CLIENT_EXIT, "bye")]


async def test_unknown_token_is_refused_with_a_reason() -> None:
    async def control(conn: FramedConnection) -> None:
        hello = await conn.recv()
        assert isinstance(hello, ControlHello)
        conn.send(Refused(SessionCode.UNKNOWN_TOKEN, "no agent has this token"))
        conn.close()

    async with await serve(control, "127.0.0.1", 0) as server:
        agent = await connect("127.0.0.1", server.port, hello=HELLO)
        assert await agent.recv() == Refused(SessionCode.UNKNOWN_TOKEN, "no agent has this token")
        with pytest.raises(ConnectionClosed):
            await agent.recv()
        await closed(agent)


async def raw_exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        try:
            return await reader.read()
        except ConnectionResetError:
            return b"<reset>"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_bad_version_gets_a_refusal_the_old_agent_can_read() -> None:
    async def control(conn: FramedConnection) -> None:
        try:
            await conn.recv()
        except UnsupportedVersion as exc:
            conn.send(Refused(SessionCode.BAD_VERSION, str(exc)))
            conn.close()

    async with await serve(control, "127.0.0.1", 0) as server:
        reply = await raw_exchange(server.port, encode_preface(9) + encode(HELLO))
    reader = MessageReader()
    reader.feed(reply)
    refused = reader.next_message()
    assert isinstance(refused, Refused)
    assert refused.reason is SessionCode.BAD_VERSION
    assert "version 9" in refused.message


async def test_not_portway_is_dropped_without_a_reply() -> None:
    errors: list[str] = []

    async def control(conn: FramedConnection) -> None:
        try:
            await conn.recv()
        except ProtocolError as exc:
            errors.append(exc.code)
            raise  # the server drops the peer

    async with await serve(control, "127.0.0.1", 0) as server:
        reply = await raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert errors == ["bad_magic"]
    assert reply in (b"", b"<reset>")


async def test_oversized_hello_is_refused_before_its_payload_arrives() -> None:
    errors: list[str] = []

    async def control(conn: FramedConnection) -> None:
        try:
            await conn.recv()
        except ProtocolError as exc:
            errors.append(exc.code)
            conn.abort()

    async with await serve(control, "127.0.0.1", 0) as server:
        # Only the header is ever sent: the hub must decide from it alone.
        header = (MAX_HELLO_PAYLOAD + 1).to_bytes(4, "big") + b"\x01"
        await raw_exchange(server.port, PREFACE + header)
    assert errors == ["frame_too_large"]


async def test_unread_connection_stops_reading_at_a_bound() -> None:
    ready: asyncio.Future[FramedConnection] = asyncio.get_running_loop().create_future()
    release = asyncio.Event()
    flood = [Ping(i) for i in range(20_000)]  # about 300 KB of frames

    async def control(conn: FramedConnection) -> None:
        ready.set_result(conn)
        await release.wait()
        for message in [HELLO, *flood]:
            assert await conn.recv() == message
        conn.close()

    async with await serve(control, "127.0.0.1", 0) as server:
        agent = await connect("127.0.0.1", server.port, hello=HELLO)
        agent.send(*flood)
        conn = await ready
        await wait_until(
            lambda: conn.transport is not None and not conn.transport.is_reading(),
            "the hub stops reading the flood",
        )
        assert conn.reader.frames.buffered <= MAX_HELLO_PAYLOAD + 256 * 1024
        release.set()
        with pytest.raises(ConnectionClosed):
            await agent.recv()
        await closed(agent)


# --- data channels: the handshake, then a splice ------------------------------------------


class Hub:
    """A minimal hub for one exposing agent: channels join a pool; a visitor on the public
    port takes a channel, assigns it, and is spliced to it once the agent confirms."""

    def __init__(self, harness: Harness, target_port: int) -> None:
        self.harness = harness
        self.target_port = target_port
        self.pool: asyncio.Queue[FramedConnection] = asyncio.Queue()
        self.rests: list[bytes] = []
        self.detached: list[FramedConnection] = []

    async def channel(self, conn: FramedConnection) -> None:
        hello = await conn.recv()
        assert isinstance(hello, ChannelHello)
        assert hello.secret == WELCOME.channel_secret
        self.pool.put_nowait(conn)

    async def listen(self) -> int:
        """The tunnel's public port."""
        public = await asyncio.get_running_loop().create_server(self.visitor, "127.0.0.1", 0)
        self.harness.servers.append(public)
        port: int = public.sockets[0].getsockname()[1]
        return port

    def visitor(self) -> asyncio.Protocol:
        splice = Splice(a_framed=False, b_framed=True)
        self.harness.splices.append(splice)
        self.harness.spawn(self.assign(splice))
        return splice.a

    async def assign(self, splice: Splice) -> None:
        conn = await self.pool.get()
        conn.send(Assign("c1", AssignMode.DIAL, "t1", Protocol.TCP, "127.0.0.1", self.target_port))
        reply = await conn.recv()
        if isinstance(reply, AssignOk):
            transport, rest = conn.detach()
            self.rests.append(rest)
            self.detached.append(conn)
            splice.attach(splice.b, transport, rest)
        else:
            assert isinstance(reply, AssignError)
            conn.close()
            splice.reset(reply.reason)


async def expose(harness: Harness, port: int, secret: str) -> Splice | None:
    """The exposing agent's side of one pooled channel: wait for assign, dial, confirm, splice."""
    loop = asyncio.get_running_loop()
    channel = await connect("127.0.0.1", port, hello=ChannelHello("s1", secret=secret))
    assign = await channel.recv()
    assert isinstance(assign, Assign)
    splice = Splice(a_framed=True, b_framed=False)
    harness.splices.append(splice)
    try:
        await loop.create_connection(splice.connector(splice.b), assign.host, assign.port)
    except ConnectionRefusedError as exc:
        channel.send(AssignError(assign.conn, Reason.TARGET_REFUSED, str(exc)))
        splice.reset(Reason.TARGET_REFUSED)
        await channel.drain()
        await closed(channel)
        return None
    channel.send(AssignOk(assign.conn))  # precedes anything the target already sent
    transport, rest = channel.detach()
    splice.attach(splice.a, transport, rest)
    return splice


async def test_expose_flow_with_early_visitor_bytes_and_server_first_target(
    harness: Harness,
) -> None:
    up, greeting = payload(3 * 1024 * 1024, 11), b"220 ready\r\n"
    target = await harness.target(hash_server(greeting))  # speaks first, like SMTP or MySQL
    hub_side = Hub(harness, target)
    async with await serve(hub_side.channel, "127.0.0.1", 0) as server:
        public = await hub_side.listen()
        # The visitor connects and sends everything (and its EOF) before any channel exists.
        reader, writer = await harness.connect(public)
        reply = harness.spawn(exchange(reader, writer, up))
        await wait_until(lambda: bool(harness.splices), "the visitor is accepted")
        agent_splice = await expose(harness, server.port, WELCOME.channel_secret)
        assert agent_splice is not None
        assert await reply == greeting + hashlib.sha256(up).hexdigest().encode()
        assert await agent_splice.wait_closed() is None
        assert agent_splice.bytes_a_to_b == len(up)
        assert await harness.splices[0].wait_closed() is None


async def test_assign_error_resets_the_visitor_with_the_reason(harness: Harness) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    hub_side = Hub(harness, closed_port)
    async with await serve(hub_side.channel, "127.0.0.1", 0) as server:
        reader, writer = await harness.connect(await hub_side.listen())
        writer.write(b"hello?")
        assert await expose(harness, server.port, WELCOME.channel_secret) is None
        with pytest.raises(ConnectionResetError):
            await reader.read()
        assert await harness.splices[0].wait_closed() is Reason.TARGET_REFUSED


async def test_bytes_after_assign_ok_in_the_same_read_reach_the_splice(
    harness: Harness,
) -> None:
    """The hub reads ``assign_ok`` and the first stream chunk in one read: the chunk must come
    out of ``detach`` and be relayed first."""
    hub_side = Hub(harness, 9)
    async with await serve(hub_side.channel, "127.0.0.1", 0) as server:
        reader, writer = await harness.connect(await hub_side.listen())
        agent_reader, agent_writer = await harness.connect(server.port)
        agent_writer.write(PREFACE + encode(ChannelHello("s1", secret=WELCOME.channel_secret)))
        assign = MessageReader()
        while (message := assign.next_message()) is None:
            assign.feed(await agent_reader.read(1 << 16))
        assert isinstance(message, Assign)
        # One write: the confirmation, a greeting, and EOF of the agent→hub direction.
        agent_writer.write(encode(AssignOk("c1")) + b"".join(encode_chunks(b"hi!")) + b"\0" * 4)
        assert await reader.read() == b"hi!"
        assert hub_side.rests == [b"\x00\x00\x00\x03hi!\x00\x00\x00\x00"]
        channel = hub_side.detached[0]
        with pytest.raises(RuntimeError, match="detached"):
            channel.send(Ping(1))  # frames must never leak into the stream
        await channel.wait_closed()  # returns: the splice owns the transport now
        writer.write_eof()
        assert await agent_reader.read() == b"\x00\x00\x00\x00"  # the visitor's EOF, in-band
        agent_writer.close()
        assert await harness.splices[0].wait_closed() is None
