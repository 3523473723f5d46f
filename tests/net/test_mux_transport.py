"""A stream as an asyncio transport (net/mux_transport.py) and the agent port (net/agent_port.py),
on real loopback sessions: the hand-overs every path makes (a framed answer, then a splice or a
UDP relay) lose no byte, no FIN and no reset reason, and a version 1 agent gets a refusal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from portway.net import agent_port
from portway.net.framed import FramedConnection
from portway.net.mux import MuxConnection
from portway.net.mux_stream import MuxStream
from portway.net.mux_transport import StreamResetError, StreamTransport
from portway.wire.assignment_messages import AssignOk
from portway.wire.codes import Reason, SessionCode
from portway.wire.control_messages import Refused
from portway.wire.frames import MAX_HELLO_PAYLOAD, encode_preface
from portway.wire.messages import MessageReader, encode
from portway.wire.mux import MuxSession

from .harness import Harness, wait_until


class Sink(asyncio.Protocol):
    """The protocol a stream is handed to after its framed answer: records what it hears."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False
        self.lost: list[Exception | None] = []

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


@dataclass
class Pair:
    """A hub end and an agent end of one session; streams the agent opens land in `accepted`."""

    hub: MuxConnection
    agent: MuxConnection
    accepted: list[StreamTransport] = field(default_factory=list)


@pytest.fixture
async def pair(harness: Harness) -> AsyncIterator[Pair]:
    accepted: list[StreamTransport] = []

    def on_open(stream: MuxStream, first: memoryview) -> int:
        accepted.append(StreamTransport(stream, FramedConnection(max_payload=MAX_HELLO_PAYLOAD)))
        return 0

    hubs: list[MuxConnection] = []

    def factory() -> MuxConnection:
        hubs.append(MuxConnection(MuxSession(client=False), on_open, name="hub"))
        return hubs[-1]

    server = await agent_port.listen(factory, "127.0.0.1", 0)
    harness.servers.append(server)
    port = server.sockets[0].getsockname()[1]

    def make() -> MuxConnection:
        return MuxConnection(
            MuxSession(client=True), lambda s, f: 0, preface=agent_port.V2_PREFACE, name="agent"
        )

    agent = await agent_port.dial(make, "127.0.0.1", port)
    await wait_until(lambda: bool(hubs), "the hub made the session")
    yield Pair(hubs[0], agent, accepted)
    agent.close()
    await wait_until(lambda: hubs[0].transport is None, "the hub saw the session close")


async def test_bytes_held_while_paused_go_to_the_next_protocol(pair: Pair) -> None:
    """The framed reader pauses on a large read; detaching resumes it, and what was held goes
    to the protocol set in the same step (a UDP relay once lost these and stalled)."""
    stream = pair.agent.open_stream(encode(AssignOk("c1")) + b"x" * 200_000)
    stream.write(b"y" * 300_000)
    await wait_until(lambda: bool(pair.accepted), "the stream was accepted")
    transport = pair.accepted[0]
    channel = transport.get_protocol()
    assert isinstance(channel, FramedConnection)
    assert await channel.recv() == AssignOk("c1")
    await wait_until(lambda: not transport.is_reading(), "the reader paused")
    detached, rest = channel.detach()
    sink = Sink()
    detached.set_protocol(sink)
    sink.data += rest
    await wait_until(lambda: len(sink.data) == 500_000, "every byte reached the sink")
    assert bytes(sink.data) == b"x" * 200_000 + b"y" * 300_000


async def test_a_fin_right_after_the_answer_reaches_the_next_protocol(pair: Pair) -> None:
    stream = pair.agent.open_stream(encode(AssignOk("c2")) + b"banner")
    stream.write_eof()
    await wait_until(lambda: bool(pair.accepted), "the stream was accepted")
    channel = pair.accepted[0].get_protocol()
    assert isinstance(channel, FramedConnection)
    assert await channel.recv() == AssignOk("c2")
    # The FIN reaches the framed reader while it still owns the stream.
    await wait_until(lambda: channel.at_eof, "the framed reader heard the FIN")
    detached, rest = channel.detach()
    sink = Sink()
    detached.set_protocol(sink)
    sink.data += rest
    await wait_until(lambda: sink.eof, "the sink heard the FIN")
    assert bytes(sink.data) == b"banner"
    detached.write_eof()
    await wait_until(lambda: sink.lost == [None], "the stream finished cleanly")


async def test_a_reset_carries_its_reason(pair: Pair) -> None:
    stream = pair.agent.open_stream(encode(AssignOk("c3")))
    await wait_until(lambda: bool(pair.accepted), "the stream was accepted")
    transport = pair.accepted[0]
    sink = Sink()
    transport.set_protocol(sink)
    stream.reset(Reason.TARGET_REFUSED)
    await wait_until(lambda: bool(sink.lost), "the sink heard the reset")
    assert isinstance(sink.lost[0], StreamResetError)
    assert sink.lost[0].reason is Reason.TARGET_REFUSED


async def test_a_version_1_agent_gets_a_refusal_naming_the_versions(harness: Harness) -> None:
    server = await agent_port.listen(
        lambda: pytest.fail("a version 1 preface must not make a session"), "127.0.0.1", 0
    )
    harness.servers.append(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    harness.writers.append(writer)
    writer.write(encode_preface(1))
    async with asyncio.timeout(5):
        answer = await reader.read()  # the hub closes after its refusal: no hang
    messages = MessageReader()
    messages.feed(answer)
    refusal = messages.next_message()
    assert isinstance(refusal, Refused)
    assert refusal.reason is SessionCode.BAD_VERSION
    assert "version 2" in refusal.message and "speaks 1" in refusal.message


async def test_garbage_and_silence_are_closed(harness: Harness) -> None:
    server = await agent_port.listen(
        lambda: pytest.fail("no session without a preface"), "127.0.0.1", 0, preface_timeout=0.2
    )
    harness.servers.append(server)
    port = server.sockets[0].getsockname()[1]
    for first in (b"GET / HTTP/1.1\r\n\r\n", b""):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        harness.writers.append(writer)
        writer.write(first)
        async with asyncio.timeout(5):
            assert await reader.read() == b""


class Recorder(asyncio.Protocol):
    """Records what a stream's protocol hears, in order."""

    def __init__(self, *, keep_open: bool = True) -> None:
        self.keep_open = keep_open
        self.events: list[tuple[str, object]] = []

    def data_received(self, data: bytes) -> None:
        self.events.append(("data", data))

    def eof_received(self) -> bool:
        self.events.append(("eof", None))
        return self.keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", exc))

    @property
    def data(self) -> bytes:
        return b"".join(d for kind, d in self.events if kind == "data" and isinstance(d, bytes))


async def _held_with_fin(pair: Pair, payload: bytes) -> tuple[StreamTransport, Recorder, Recorder]:
    """A stream whose hub end paused reading while the agent sent ``payload`` and its FIN."""
    peer = Recorder()
    peer_transport = StreamTransport(pair.agent.open_stream(), peer)
    await wait_until(lambda: bool(pair.accepted), "the stream was accepted")
    transport = pair.accepted[0]
    reader = Recorder()
    transport.set_protocol(reader)
    transport.pause_reading()
    for i in range(0, len(payload), 7_000):
        peer_transport.write(payload[i : i + 7_000])
    peer_transport.write_eof()
    await wait_until(lambda: transport._held_eof, "the bytes and the FIN are held")
    assert reader.events == []
    return transport, reader, peer


@pytest.mark.parametrize("keep_open", [True, False])
async def test_a_stream_ended_both_ways_still_delivers_what_a_paused_reader_holds(
    pair: Pair, keep_open: bool
) -> None:
    """Our FIN after the peer's, while the reader is paused, finishes the stream on the wire,
    but the reader still gets every held byte in order on resume, then the FIN, then a clean
    connection_lost (these were once dropped)."""
    payload = bytes(range(256)) * 400  # 102 400 bytes, within the initial window
    transport, reader, peer = await _held_with_fin(pair, payload)
    reader.keep_open = keep_open
    transport.write_eof()
    await wait_until(lambda: ("eof", None) in peer.events, "the peer heard our FIN")
    await wait_until(lambda: peer.events[-1:] == [("lost", None)], "the peer's end finished")
    assert reader.events == []
    transport.resume_reading()
    await wait_until(lambda: ("lost", None) in reader.events, "the reader's end finished")
    kinds = [kind for kind, _ in reader.events]
    assert kinds[-2:] == ["eof", "lost"] and set(kinds[:-2]) == {"data"}
    assert reader.data == payload
    assert reader.events[-1] == ("lost", None)


@pytest.mark.parametrize("eof_first", [False, True])
async def test_close_drops_what_a_paused_reader_holds(pair: Pair, eof_first: bool) -> None:
    """``close`` (after ``write_eof`` or not) drops the held bytes and the peer's FIN, as its
    docstring says, and the stream still finishes cleanly both ways."""
    transport, reader, peer = await _held_with_fin(pair, b"z" * 50_000)
    if eof_first:
        transport.write_eof()
    transport.close()
    transport.resume_reading()
    await wait_until(lambda: bool(reader.events), "the reader's end finished")
    await wait_until(lambda: peer.events[-1:] == [("lost", None)], "the peer's end finished")
    assert reader.events == [("lost", None)]
