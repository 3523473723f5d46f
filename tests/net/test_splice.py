"""Splices on real loopback sockets and version 2 streams: a relay between sockets, a relay to a
TLS target, and a chain shaped like the reach path (client → entry → hub → exposer → target)
with a splice at every hop, so both sockets and streams are legs."""

from __future__ import annotations

import asyncio
import hashlib
import socket

import pytest

from portway.net.mux_stream import MuxStream
from portway.net.mux_transport import StreamResetError, StreamTransport
from portway.net.splice import Splice
from portway.wire.codes import Reason
from portway.wire.mux_sending import HIGH_WATER

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
    relay = await harness.relay(dial_port=target)
    reader, writer = await harness.connect(relay.port)
    check_reply(await exchange(reader, writer, up), down, up)
    (splice,) = relay.splices
    assert await splice.wait_closed() is None
    assert (splice.bytes_a_to_b, splice.bytes_b_to_a) == (len(up), len(down) + 64)


async def test_a_tls_leg_is_closed_once_both_directions_are_done(
    harness: Harness, tls_pair: Tls
) -> None:
    """TLS cannot half-close: the client's EOF is not passed on to the TLS target, which answers
    a request of known length and closes; the client then gets the answer and its EOF."""
    request, answer = payload(300_000, 7), payload(2 * MB, 8)

    async def answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readexactly(len(request)) == request
        writer.write(answer)
        await writer.drain()  # the harness closes the connection (close_notify) after

    target = await harness.target(answer_then_close, ssl_context=tls_pair.server)
    relay = await harness.relay(dial_port=target, client_ssl=tls_pair.client)
    reader, writer = await harness.connect(relay.port)
    assert await exchange(reader, writer, request) == answer
    (splice,) = relay.splices
    assert await splice.wait_closed() is None
    assert (splice.bytes_a_to_b, splice.bytes_b_to_a) == (len(request), len(answer))


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
        # Counters are the client's and the target's bytes at every hop.
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
            # At most the high-water mark (a socket's `limit`, a stream's send queue bound) plus
            # what one read (or one TLS batch) added.
            high = HIGH_WATER if isinstance(leg.transport, StreamTransport) else limit
            assert leg.transport.get_write_buffer_size() <= high + 2 * MAX_READ, leg
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
        assert entry.b.pending_size == size  # held as it came
        assert not entry.a.reading_paused
    else:
        await wait_until(lambda: entry.a.reading_paused, "the visitor is paused at the bound")
        assert limit <= entry.b.pending_size <= limit + MAX_READ
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


async def test_external_reset_closes_both_sides(harness: Harness) -> None:
    target = await harness.target(hash_server(b""))
    chain = await harness.chain(target)
    reader, _ = await harness.connect(chain.port)
    await wait_until(chain.connected, "the chain is connected")
    entry, hub, exposer = chain.splices()
    hub.reset(Reason.PAUSED)  # e.g. the tunnel was paused: live connections close
    with pytest.raises(ConnectionResetError):
        await reader.read()
    assert await entry.wait_closed() is Reason.PAUSED  # the reason crossed on each stream's RST
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


async def test_session_lost_mid_stream_resets_both_hops(harness: Harness) -> None:
    target = await harness.target(hash_server(b""))
    chain = await harness.chain(target)
    reader, _ = await harness.connect(chain.port)
    await wait_until(chain.connected, "the chain is connected")
    entry, hub, exposer = chain.splices()
    stream = entry.b.transport
    assert isinstance(stream, StreamTransport)
    session = stream.stream.connection.transport
    assert session is not None
    session.abort()  # the entry's session to the hub breaks: its streams are gone
    with pytest.raises(ConnectionResetError):
        await reader.read()
    assert [await s.wait_closed() for s in (entry, hub, exposer)] == [Reason.RESET] * 3


async def test_late_socket_of_a_reset_splice_is_closed_at_once(harness: Harness) -> None:
    closed: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            closed.set_result(await reader.read())
        except ConnectionResetError:
            closed.set_result(b"reset")

    target = await harness.target(sink)
    splice = Splice()
    harness.splices.append(splice)
    splice.reset(Reason.GONE)
    assert await splice.wait_closed() is Reason.GONE  # nothing attached: nothing to wait for
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(splice.connector(splice.b), "127.0.0.1", target)
    assert transport.is_closing()
    assert await splice.wait_closed() is Reason.GONE
    assert await closed == b"reset"  # a reset, never a clean EOF, and nothing else


async def test_late_stream_of_a_reset_splice_is_reset_with_the_reason(harness: Harness) -> None:
    heard: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    class Far(asyncio.Protocol):
        def connection_lost(self, exc: Exception | None) -> None:
            heard.set_result(exc)

    opened: list[StreamTransport] = []

    def on_open(stream: MuxStream, first: memoryview) -> int:
        opened.append(StreamTransport(stream, Far()))
        return 0

    session = await harness.session(on_open)
    # A stream whose framed opening is done (the peer knows it) reaches a splice reset meanwhile.
    transport = StreamTransport(session.open_stream(), asyncio.Protocol())
    await wait_until(lambda: bool(opened), "the far end has the stream")
    splice = Splice()
    harness.splices.append(splice)
    splice.reset(Reason.GONE)
    splice.attach(splice.b, transport)
    assert transport.is_closing()
    assert await splice.wait_closed() is Reason.GONE
    exc = await heard
    assert isinstance(exc, StreamResetError) and exc.reason is Reason.GONE
