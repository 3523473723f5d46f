from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Callable, Iterable

import pytest

from portway.net.splice import Splice
from portway.wire.codes import Reason
from portway.wire.stream import EOF_CHUNK, encode_chunks, encode_reset

from .harness import (
    Harness,
    Tls,
    check_reply,
    exchange,
    hash_server,
    payload,
    rst_close,
    wait_until,
)

MB = 1024 * 1024
MAX_READ = 256 * 1024  # what asyncio and uvloop read from a socket at once


async def test_raw_to_raw_carries_10mb_each_way_with_half_close(harness: Harness) -> None:
    up, down = payload(11 * MB, 1), payload(10 * MB, 2)
    target = await harness.target(hash_server(down))
    relay = await harness.relay(accept_framed=False, dial_framed=False, dial_port=target)
    reader, writer = await harness.connect(relay.port)
    check_reply(await exchange(reader, writer, up), down, up)
    (splice,) = relay.splices
    assert await splice.wait_closed() is None
    assert (splice.bytes_a_to_b, splice.bytes_b_to_a) == (len(up), len(down) + 64)


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "tls"])
async def test_reach_path_carries_10mb_each_way(
    harness: Harness, tls_pair: Tls, secure: bool
) -> None:
    up, down = payload(12 * MB, 3), payload(10 * MB, 4)
    target = await harness.target(hash_server(down))
    chain = await harness.chain(target, tls=tls_pair if secure else None)
    reader, writer = await harness.connect(chain.port)
    check_reply(await exchange(reader, writer, up), down, up)
    for splice in chain.splices():
        assert await splice.wait_closed() is None  # a clean finish everywhere, no reset
        # Counters are payload bytes: framing is never counted.
        assert (splice.bytes_a_to_b, splice.bytes_b_to_a) == (len(up), len(down) + 64)


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "tls"])
async def test_client_half_close_still_gets_the_whole_reply(
    harness: Harness, tls_pair: Tls, secure: bool
) -> None:
    reply = payload(3 * MB, 5)

    async def reply_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read()  # until the client's EOF has crossed every hop
        writer.write(b"%d:" % len(request) + reply)
        await writer.drain()

    target = await harness.target(reply_after_eof)
    chain = await harness.chain(target, tls=tls_pair if secure else None)
    reader, writer = await harness.connect(chain.port)
    writer.write(b"SELECT 1;")
    writer.write_eof()
    assert await reader.read() == b"9:" + reply
    for splice in chain.splices():
        assert await splice.wait_closed() is None


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "tls"])
async def test_a_reader_that_stops_reading_bounds_every_relay_buffer(
    harness: Harness, tls_pair: Tls, secure: bool
) -> None:
    limit = 128 * 1024
    release, stop = asyncio.Event(), asyncio.Event()

    async def slow_target(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        digest = hashlib.sha256()
        while chunk := await reader.read(1 << 18):
            digest.update(chunk)
        writer.write(digest.hexdigest().encode())

    target = await harness.target(slow_target)
    chain = await harness.chain(target, tls=tls_pair if secure else None, limit=limit)
    reader, writer = await harness.connect(chain.port)
    sent = hashlib.sha256()

    async def flood() -> None:
        block = 0
        while not stop.is_set():
            data = payload(MB, 100 + block)
            sent.update(data)
            writer.write(data)
            block += 1
            await writer.drain()
        writer.write_eof()

    flooding = harness.spawn(flood())
    await wait_until(chain.connected, "the chain is connected")
    splices = chain.splices()
    # The stall propagates hop by hop back to the client: each relay stops reading upstream.
    await wait_until(
        lambda: all(s.a.reading_paused for s in splices), "every relay paused its upstream"
    )
    for splice in splices:
        for leg in (splice.a, splice.b):
            assert leg.transport is not None
            # At most the high-water mark plus what one read (or one TLS batch) added.
            assert leg.transport.get_write_buffer_size() <= limit + 2 * MAX_READ, leg
            assert leg.pending_size == 0
    stop.set()
    release.set()
    await flooding
    assert await reader.read() == sent.hexdigest().encode()
    for splice in splices:
        assert await splice.wait_closed() is None


@pytest.mark.parametrize("size", [100, 2 * MB], ids=["small", "over-limit"])
async def test_early_bytes_are_held_and_flushed_in_order(harness: Harness, size: int) -> None:
    limit = 256 * 1024
    early = payload(size, 6)
    gate = asyncio.Event()
    target = await harness.target(hash_server(b"ready"))
    chain = await harness.chain(target, gate=gate, limit=limit)
    reader, writer = await harness.connect(chain.port)

    async def send() -> None:
        writer.write(early)
        writer.write_eof()  # the client is done before the far side even exists
        await writer.drain()

    sending = harness.spawn(send())
    await wait_until(lambda: len(chain.entry.splices) == 1, "the visitor is accepted")
    (entry,) = chain.entry.splices
    if size < limit:
        await wait_until(lambda: entry.a.eof_in, "the whole request and its EOF are held")
        assert entry.b.pending_size == size + 4  # one chunk header: held already framed
        assert not entry.a.reading_paused
    else:
        await wait_until(lambda: entry.a.reading_paused, "the visitor is paused at the bound")
        assert limit <= entry.b.pending_size <= limit + 256 * 1024 + 4
    assert entry.b.transport is None
    gate.set()
    await sending
    reply = await reader.read()
    assert reply == b"ready" + hashlib.sha256(early).hexdigest().encode()
    assert await entry.wait_closed() is None


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "tls"])
async def test_target_reset_reaches_the_client_as_a_reset(
    harness: Harness, tls_pair: Tls, secure: bool
) -> None:
    async def crash(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(2)
        writer.write(b"partial")
        await writer.drain()
        rst_close(writer)

    target = await harness.target(crash)
    chain = await harness.chain(target, tls=tls_pair if secure else None)
    reader, writer = await harness.connect(chain.port)
    writer.write(b"go")
    with pytest.raises(ConnectionResetError):
        await reader.read()
    for splice in chain.splices():
        assert await splice.wait_closed() is Reason.RESET


async def test_client_reset_reaches_the_target_as_a_reset(harness: Harness) -> None:
    seen: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def watch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"hello")
            while await reader.read(1 << 16):
                pass
            seen.set_result(None)
        except ConnectionResetError as exc:
            seen.set_result(exc)

    target = await harness.target(watch)
    chain = await harness.chain(target)
    reader, writer = await harness.connect(chain.port)
    assert await reader.readexactly(5) == b"hello"
    rst_close(writer)
    assert isinstance(await seen, ConnectionResetError)
    for splice in chain.splices():
        assert await splice.wait_closed() is Reason.RESET


async def test_refused_dial_resets_with_its_reason_all_the_way(harness: Harness) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    chain = await harness.chain(closed_port)
    reader, writer = await harness.connect(chain.port)
    writer.write(b"hello?")
    with pytest.raises(ConnectionResetError):
        await reader.read()
    assert [await s.wait_closed() for s in chain.splices()] == [Reason.TARGET_REFUSED] * 3


async def test_broken_framing_resets_with_protocol_error(harness: Harness) -> None:
    got = bytearray()
    seen: asyncio.Future[type[BaseException] | None] = asyncio.get_running_loop().create_future()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(1 << 16):
                got.extend(chunk)
            seen.set_result(None)
        except ConnectionResetError as exc:
            seen.set_result(type(exc))

    target = await harness.target(record)
    relay = await harness.relay(accept_framed=True, dial_framed=False, dial_port=target)
    reader, writer = await harness.connect(relay.port)
    writer.write(b"\x00\x00\x00\x02ok")
    await wait_until(lambda: got == b"ok", "the valid chunk reached the target")
    writer.write(b"\xff\xff\xff\x00")  # a length no writer may send
    # The offender is told why in-band, then closed; the target sees a reset, not an EOF.
    assert await reader.read() == encode_reset(Reason.PROTOCOL_ERROR)
    assert await seen is ConnectionResetError
    assert await relay.splices[0].wait_closed() is Reason.PROTOCOL_ERROR


async def test_channel_closed_without_eof_marker_is_a_reset(harness: Harness) -> None:
    seen: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = bytearray()
        try:
            while chunk := await reader.read(1 << 16):
                got += chunk
            seen.set_result(b"clean EOF: " + bytes(got))
        except ConnectionResetError:
            seen.set_result(bytes(got))

    target = await harness.target(record)
    relay = await harness.relay(accept_framed=True, dial_framed=False, dial_port=target)
    reader, writer = await harness.connect(relay.port)
    await wait_until(lambda: bool(relay.splices and relay.splices[0].b.transport), "dialed")
    writer.write(b"\x00\x00\x00\x04half")
    writer.write_eof()  # a TCP FIN, not the in-band EOF: the agent went away mid-stream
    # A truncated stream must not look complete to the target.
    assert await seen == b"half"
    assert await reader.read() == b""
    assert await relay.splices[0].wait_closed() is Reason.RESET


async def test_external_reset_closes_both_sides(harness: Harness) -> None:
    target = await harness.target(hash_server(b""))
    chain = await harness.chain(target)
    reader, _ = await harness.connect(chain.port)
    await wait_until(chain.connected, "the chain is connected")
    entry, hub, exposer = chain.splices()
    hub.reset(Reason.PAUSED)  # e.g. the tunnel was paused: live connections close
    with pytest.raises(ConnectionResetError):
        await reader.read()
    assert await entry.wait_closed() is Reason.PAUSED  # the reason crossed the framed hop
    assert await exposer.wait_closed() is Reason.PAUSED
    assert await hub.wait_closed() is Reason.PAUSED


async def test_many_concurrent_connections_keep_their_own_bytes(
    harness: Harness, tls_pair: Tls
) -> None:
    target = await harness.target(hash_server(b"|"))
    chain = await harness.chain(target, tls=tls_pair)

    async def one(i: int) -> None:
        data = payload(64 * 1024 + i, 1000 + i)
        reader, writer = await harness.connect(chain.port)
        reply = await exchange(reader, writer, data)
        assert reply == b"|" + hashlib.sha256(data).hexdigest().encode()

    await asyncio.gather(*(one(i) for i in range(60)))
    results = [await s.wait_closed() for r in (chain.entry, chain.hub) for s in r.splices]
    assert results == [None] * 120


async def test_late_leg_of_a_reset_splice_is_closed_at_once(harness: Harness) -> None:
    closed: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            closed.set_result(await reader.read())
        except ConnectionResetError:
            closed.set_result(b"reset")

    target = await harness.target(sink)
    splice = Splice(a_framed=False, b_framed=True)
    harness.splices.append(splice)
    splice.reset(Reason.GONE)
    assert await splice.wait_closed() is Reason.GONE  # nothing attached: nothing to wait for
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(splice.connector(splice.b), "127.0.0.1", target)
    assert transport.is_closing()
    assert await splice.wait_closed() is Reason.GONE
    # The late data channel is told why, in-band, and nothing else reaches it.
    assert await closed == encode_reset(Reason.GONE)


class Recording(asyncio.Transport):
    """A transport that keeps each write call's buffers (a TLS transport makes each buffer a
    record of its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[bytes]] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.calls.append([bytes(data)])

    def writelines(self, parts: Iterable[bytes | bytearray | memoryview]) -> None:
        self.calls.append([bytes(p) for p in parts])

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def abort(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


@pytest.mark.parametrize(("size", "buffers"), [(200, 1), (16 * 1024, 1), (16 * 1024 + 1, 2)])
async def test_a_small_read_goes_onto_a_channel_as_one_buffer(size: int, buffers: int) -> None:
    splice = Splice(a_framed=False, b_framed=True)
    raw, channel = Recording(), Recording()
    splice.attach(splice.b, channel)
    splice.attach(splice.a, raw)
    splice.a.data_received(b"x" * size)
    assert [len(call) for call in channel.calls] == [buffers]
    assert b"".join(channel.calls[0]) == size.to_bytes(4, "big") + b"x" * size
    splice.reset()


async def test_both_channels_of_a_relay_between_agents_go_back_to_their_pools() -> None:
    """The hub between a reaching and an exposing agent: after both in-band EOFs each channel
    is handed to its own pool, and what followed a channel's EOF (its next use) is kept for
    that channel, never relayed to the other."""
    splice = Splice(a_framed=True, b_framed=True)
    kept: dict[str, bytes] = {}

    def keeper(name: str) -> Callable[[asyncio.Transport, bytes], bool]:
        def keep(_transport: asyncio.Transport, rest: bytes) -> bool:
            kept[name] = rest
            return True

        return keep

    splice.reuse(splice.a, keeper("a"))
    splice.reuse(splice.b, keeper("b"))
    reaching, exposing = Recording(), Recording()
    splice.attach(splice.a, reaching)
    splice.attach(splice.b, exposing)
    request = b"".join(encode_chunks(b"ping")) + EOF_CHUNK
    splice.a.data_received(request + b"next use")
    assert b"".join(b"".join(call) for call in exposing.calls) == request
    assert splice.open
    splice.b.data_received(b"".join(encode_chunks(b"pong")) + EOF_CHUNK)
    assert kept == {"a": b"next use", "b": b""}
    assert (splice.open, splice.result) == (False, None)  # finished cleanly
    assert not reaching.is_closing() and not exposing.is_closing()
