"""UDP sessions over datagram-framed channels, on real loopback sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest

from portway.hub.dataplane.routes import udp_idle_timeout
from portway.hub.dataplane.traffic import Traffic
from portway.net.udp import PENDING_DATAGRAMS, Address, UdpSession, UdpSessionTable
from portway.testing.udp_origins import dns_answer, parse_question
from portway.wire.codes import Reason
from portway.wire.datagram import MAX_DATAGRAM, DatagramDecoder, encode_datagram

DEADLINE = 10.0


async def until(condition: Callable[[], object], what: str) -> None:
    async with asyncio.timeout(DEADLINE):
        while not condition():
            await asyncio.sleep(0.005)


class Far:
    """The far end of a channel: what the agent or hub on the other side would read/write."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = DatagramDecoder()
        self.got: list[bytes] = []

    async def read(self, count: int) -> list[bytes]:
        async with asyncio.timeout(DEADLINE):
            while len(self.got) < count and self.decoder.closed is None:
                data = await self.reader.read(256 * 1024)
                if not data:
                    break
                self.got += [bytes(d) for d in self.decoder.feed(data)]
        return self.got

    async def closed(self) -> Reason | None:
        async with asyncio.timeout(DEADLINE):
            while data := await self.reader.read(256 * 1024):
                self.got += [bytes(d) for d in self.decoder.feed(data)]
        return self.decoder.closed


MakeChannel = Callable[[], Awaitable[tuple[asyncio.Transport, Far]]]


@pytest.fixture
async def channel() -> AsyncIterator[MakeChannel]:
    """Make (transport for the session, far end) pairs over socketpairs; all closed after."""
    made: list[tuple[asyncio.Transport, Far]] = []
    loop = asyncio.get_running_loop()

    async def make() -> tuple[asyncio.Transport, Far]:
        near, far = socket.socketpair()
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=near)
        reader, writer = await asyncio.open_connection(sock=far)
        made.append((transport, Far(reader, writer)))
        return transport, made[-1][1]

    yield make
    for transport, far in made:
        transport.abort()
        far.writer.close()
        await asyncio.sleep(0)


def collecting() -> tuple[list[bytes], Callable[[memoryview, Address | None], bool]]:
    replies: list[bytes] = []

    def reply(datagram: memoryview, _addr: Address | None) -> bool:
        replies.append(bytes(datagram))
        return True

    return replies, reply


async def test_held_datagrams_are_bounded_then_flushed_whole_and_in_order(
    channel: MakeChannel,
) -> None:
    replies, reply = collecting()
    session = UdpSession(("127.0.0.1", 1), reply)
    for i in range(PENDING_DATAGRAMS + 10):
        session.from_sender(f"d{i}".encode())
    assert session.datagrams_dropped == 10 and session.datagrams_in == 0
    transport, far = await channel()
    session.attach(transport)
    assert await far.read(PENDING_DATAGRAMS) == [f"d{i}".encode() for i in range(64)]
    assert session.datagrams_in == PENDING_DATAGRAMS

    # Replies: two records in one write, then a largest datagram split across writes.
    big = os.urandom(MAX_DATAGRAM)
    far.writer.write(encode_datagram(b"r1") + encode_datagram(b""))
    record = encode_datagram(big)
    far.writer.write(record[:1000])
    await far.writer.drain()
    await until(lambda: len(replies) == 2, "two replies")
    far.writer.write(record[1000:])
    await until(lambda: len(replies) == 3, "the large reply")
    assert replies == [b"r1", b"", big]
    assert (session.datagrams_out, session.bytes_b_to_a) == (3, 2 + MAX_DATAGRAM)

    session.reset(Reason.PAUSED)
    assert await far.closed() is Reason.PAUSED
    session.from_sender(b"late")
    assert session.datagrams_dropped == 11


async def test_idle_session_ends_with_idle_timeout(channel: MakeChannel) -> None:
    ended: list[UdpSession] = []
    _replies, reply = collecting()
    session = UdpSession(None, reply, ended.append, idle_timeout=0.05)
    transport, far = await channel()
    session.attach(transport)
    session.from_sender(b"hello")
    assert await far.closed() is Reason.IDLE_TIMEOUT
    assert far.got == [b"hello"]
    assert ended == [session] and session.result is Reason.IDLE_TIMEOUT


async def test_a_full_channel_drops_instead_of_buffering(channel: MakeChannel) -> None:
    _replies, reply = collecting()
    session = UdpSession(None, reply)
    transport, far = await channel()
    session.attach(transport)
    assert session.channel is not None
    payload = os.urandom(60_000)
    for _ in range(500):  # 30 MB offered with nobody reading: far more than any buffer
        session.from_sender(payload)
    assert session.datagrams_dropped > 0
    assert transport.get_write_buffer_size() < session.channel.limit + len(payload) + 2
    sent = session.datagrams_in
    assert sent + session.datagrams_dropped == 500
    assert len(await far.read(sent)) == sent  # what was not dropped arrives whole
    session.reset()


async def test_broken_framing_from_the_far_side_ends_the_session(channel: MakeChannel) -> None:
    _replies, reply = collecting()
    session = UdpSession(None, reply)
    transport, far = await channel()
    session.attach(transport)
    far.writer.write(b"\xff\xfa" + b"x" * 10)  # 65530 is no valid length
    await until(lambda: not session.open, "the session to end")
    assert session.result is Reason.PROTOCOL_ERROR


async def test_each_sender_gets_its_own_session_and_only_its_replies(channel: MakeChannel) -> None:
    loop = asyncio.get_running_loop()
    fars: list[Far] = []
    echoes: list[asyncio.Task[None]] = []
    refuse = {"on": False}

    def opener(session: UdpSession) -> bool:
        if refuse["on"]:
            return False

        async def pair() -> None:
            transport, far = await channel()
            session.attach(transport)
            fars.append(far)
            while data := await far.reader.read(65536):  # echo framed records as they are
                far.decoder.feed(data)
                if far.decoder.closed is not None:
                    break
                far.writer.write(data)

        echoes.append(asyncio.ensure_future(pair()))
        return True

    table = UdpSessionTable(opener)
    transport, _ = await loop.create_datagram_endpoint(lambda: table, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    clients = []
    for i in range(3):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        clients.append(sock)
        for n in range(3):
            sock.sendto(f"c{i}-{n}".encode(), ("127.0.0.1", port))
    try:
        for i, sock in enumerate(clients):
            got: list[bytes] = []
            async with asyncio.timeout(DEADLINE):
                while len(got) < 3:
                    got.append(await loop.sock_recv(sock, 100))
            assert got == [f"c{i}-{n}".encode() for n in range(3)]
        assert len(table.sessions) == 3
        refuse["on"] = True
        fresh = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        clients.append(fresh)
        fresh.sendto(b"no", ("127.0.0.1", port))
        await until(lambda: table.refused == 1, "the refusal")
        assert len(table.sessions) == 3
    finally:
        table.close(Reason.CLOSED)
        for sock in clients:
            sock.close()
    async with asyncio.timeout(DEADLINE):
        await asyncio.gather(*echoes)
    assert [far.decoder.closed for far in fars] == [Reason.CLOSED] * 3
    assert table.sessions == {}


async def test_traffic_reports_datagram_counters() -> None:
    _replies, reply = collecting()
    traffic = Traffic()
    tunnel = uuid.uuid4()
    session = UdpSession(None, reply)

    traffic.opened(tunnel, session, datetime.now(UTC))
    session.datagrams_in, session.datagrams_out, session.datagrams_dropped = 5, 4, 1
    traffic.dropped(tunnel, 2)
    delta = traffic.drain()[tunnel]
    assert (delta.opened, delta.datagrams_in, delta.datagrams_out, delta.datagrams_dropped) == (
        1, 5, 4, 3,
    )  # fmt: skip
    session.datagrams_in = 7
    assert traffic.reset(tunnel, Reason.PAUSED) == 1
    traffic.closed(tunnel, session)
    delta = traffic.drain()[tunnel]
    assert (delta.closed, delta.datagrams_in, delta.datagrams_dropped) == (1, 2, 0)


@pytest.mark.parametrize(
    ("metadata", "seconds"),
    [
        ({}, 60.0), (None, 60.0), ({"udpIdleTimeout": 5}, 5.0), ({"udpIdleTimeout": 0.5}, 0.5),
        ({"udpIdleTimeout": 0}, 60.0), ({"udpIdleTimeout": "5"}, 60.0),
        ({"udpIdleTimeout": True}, 60.0), ({"udpIdleTimeout": 10**9}, 60.0),
    ],
)  # fmt: skip
def test_idle_timeout_comes_from_metadata(
    metadata: dict[str, object] | None, seconds: float
) -> None:
    assert udp_idle_timeout(metadata) == seconds


def test_dns_responder_answers_a_records() -> None:
    query = bytes.fromhex("abcd01000001000000000000") + b"\x03api\x04test\x00\x00\x01\x00\x01"
    assert parse_question(query)[:4] == (0xABCD, 0x0100, "api.test", 1)
    answer = dns_answer(query, {"api.test": "192.0.2.7"})
    assert answer is not None
    assert answer[:4] == bytes.fromhex("abcd8580") and answer.endswith(bytes([192, 0, 2, 7]))
    missing = dns_answer(query, {})
    assert missing is not None and missing[3] & 0x0F == 3
    assert dns_answer(b"short", {}) is None
