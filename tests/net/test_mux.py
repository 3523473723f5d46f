"""The version 2 adapter (`portway.net.mux`) on real loopback sockets, plain and TLS, on both
event loops: byte-exact transfers under backpressure, half-close, resets, one stalled stream
beside a bulk one, a lost session, and a peer that breaks the protocol."""

from __future__ import annotations

import asyncio
import hashlib
import logging

import pytest

from portway.net.mux import WRITE_LIMIT
from portway.wire.flow import MAX_WINDOW
from portway.wire.mux_frames import HEADER, MUX_VERSION, GoAwayCode, decode_go_away

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
from .mux_chain import MuxChain, close_chain, mux_chain

MB = 1024 * 1024


async def chain_for(harness: Harness, target: int, tls: Tls | None, **kw: object) -> MuxChain:
    chain = await mux_chain(harness, target, tls=tls, **kw)  # type: ignore[arg-type]
    harness_close = harness.aclose

    async def aclose() -> None:
        await close_chain(chain)
        await harness_close()

    harness.aclose = aclose  # type: ignore[method-assign]
    return chain


@pytest.fixture(params=[False, True], ids=["plain", "tls"])
def secure(request: pytest.FixtureRequest, tls_pair: Tls) -> Tls | None:
    return tls_pair if request.param else None


@pytest.mark.timeout(120)
async def test_100_mb_each_way_is_byte_exact(harness: Harness, secure: Tls | None) -> None:
    up, down = payload(100 * MB, 1), payload(100 * MB, 2)
    target = await harness.target(hash_server(down))
    chain = await chain_for(harness, target, secure)
    reader, writer = await harness.connect(chain.port)
    check_reply(await exchange(reader, writer, up), down, up)
    (front, back) = (chain.sockets[0], chain.sockets[1])
    assert (front.bytes_in, front.bytes_out) == (len(up), len(down) + 64)
    assert (back.bytes_out, back.bytes_in) == (len(up), len(down) + 64)
    # Both directions finished: the streams are gone from both sessions.
    await wait_until(
        lambda: not chain.front[0].session.stream_count and not chain.back[0].session.stream_count,
        "both sessions freed the stream",
    )


async def test_many_concurrent_streams_share_one_session(
    harness: Harness, secure: Tls | None
) -> None:
    down = payload(256 * 1024, 3)
    target = await harness.target(hash_server(down))
    chain = await chain_for(harness, target, secure)

    async def one(i: int) -> None:
        reader, writer = await harness.connect(chain.port)
        up = payload(64 * 1024 + i, 10 + i)
        check_reply(await exchange(reader, writer, up), down, up)

    await asyncio.gather(*(one(i) for i in range(100)))
    assert len(chain.back) == 1  # one connection carried all of them


async def test_client_half_close_still_gets_the_whole_reply(
    harness: Harness, secure: Tls | None
) -> None:
    reply = payload(3 * MB, 5)

    async def reply_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read()
        writer.write(b"%d:" % len(request) + reply)
        await writer.drain()

    target = await harness.target(reply_after_eof)
    chain = await chain_for(harness, target, secure)
    reader, writer = await harness.connect(chain.port)
    writer.write(b"SELECT 1;")
    writer.write_eof()
    assert await reader.read() == b"9:" + reply


async def test_a_target_reset_reaches_the_client_as_a_reset(
    harness: Harness, secure: Tls | None
) -> None:
    async def crash(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(5)
        writer.write(b"partial")
        await writer.drain()
        rst_close(writer)

    target = await harness.target(crash)
    chain = await chain_for(harness, target, secure)
    reader, writer = await harness.connect(chain.port)
    writer.write(b"hello")
    assert await reader.readexactly(7) == b"partial"
    with pytest.raises(ConnectionResetError):
        await reader.read()
    await wait_until(lambda: not chain.back[0].session.stream_count, "the stream is freed")


async def test_a_stalled_stream_does_not_stop_a_bulk_one(
    harness: Harness, secure: Tls | None
) -> None:
    """One client never reads a target that floods it; another moves 100 MB on the same
    session meanwhile. The stalled stream holds at most its window and the sockets' limits."""
    flood = payload(MB, 7)
    stop = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.readexactly(1)
        if first == b"F":  # the flooder: write until the test is over
            while not stop.is_set():
                writer.write(flood)
                await writer.drain()
            return
        await hash_server(b"")(reader, writer)

    target = await harness.target(handler)
    chain = await chain_for(harness, target, secure)
    _stalled_reader, stalled_writer = await harness.connect(chain.port, limit=1024)
    stalled_writer.write(b"F")
    session = chain.back[0].session
    await wait_until(lambda: session.stream_count == 1, "the stalled stream is open")
    stalled_id = session.stream_ids()[0]
    await wait_until(lambda: session.send_window(stalled_id) == 0, "the stalled window is full")

    up = b"B" + payload(100 * MB, 8)
    reader, writer = await harness.connect(chain.port)
    reply = await exchange(reader, writer, up)
    assert reply == hashlib.sha256(up[1:]).hexdigest().encode()  # the handler read the "B"
    # The stalled stream is still there, still stalled: its sender has no credit, and what its
    # front holds is its socket's write limit plus at most one window not yet credited back.
    assert session.send_window(stalled_id) == 0
    stalled = chain.sockets[0]
    assert stalled.transport is not None
    window = chain.front[0].session.receive_window(stalled_id)
    assert window <= MAX_WINDOW
    assert stalled.transport.get_write_buffer_size() <= WRITE_LIMIT + window
    stop.set()


async def test_losing_a_session_resets_only_its_streams(
    harness: Harness, secure: Tls | None
) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    target = await harness.target(echo)
    chain = await chain_for(harness, target, secure, sessions=2)
    clients = []
    for i in range(4):  # least-loaded placement: two streams on each session
        reader, writer = await harness.connect(chain.port)
        writer.write(b"ping%d" % i)
        assert await reader.readexactly(5) == b"ping%d" % i
        clients.append((reader, writer))
    lost, kept = chain.front
    assert lost.session.stream_count == kept.session.stream_count == 2
    lost_ids = set(lost.streams)
    assert lost.transport is not None
    lost.transport.abort()
    results = []
    for i, (reader, writer) in enumerate(clients):
        try:
            writer.write(b"again%d" % i)
            results.append(await reader.readexactly(6) == b"again%d" % i)
        except (ConnectionResetError, RuntimeError, asyncio.IncompleteReadError):
            results.append(False)  # reset: by the time of the write, or on the read
    assert sorted(results) == [False, False, True, True]
    assert lost_ids and not lost.streams
    assert kept.session.stream_count == 2


async def test_a_malformed_frame_gets_go_away_and_other_sessions_go_on(
    harness: Harness, secure: Tls | None, caplog: pytest.LogCaptureFixture
) -> None:
    target = await harness.target(hash_server(b"fine"))
    chain = await chain_for(harness, target, secure)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1",
        chain.back_port,
        ssl=secure.client if secure else None,
        server_hostname="localhost" if secure else None,
    )
    harness.writers.append(writer)
    with caplog.at_level(logging.WARNING, logger="portway.net.mux"):
        writer.write(HEADER.pack(MUX_VERSION + 1, 0, 0, 1, 0))  # a version 3 frame
        answer = await reader.read()  # the hub closes after its GO_AWAY
    version, kind, _flags, stream_id, length = HEADER.unpack_from(answer)
    assert (version, kind, stream_id) == (MUX_VERSION, 3, 0)
    code, message = decode_go_away(answer[HEADER.size : HEADER.size + length])
    assert code == GoAwayCode.PROTOCOL_ERROR and message
    assert "closing the session" in caplog.text
    # The well-behaved session still carries new streams.
    client_reader, client_writer = await harness.connect(chain.port)
    up = payload(MB, 9)
    check_reply(await exchange(client_reader, client_writer, up), b"fine", up)


async def test_a_window_violation_ends_the_session_with_flow_control_error(
    harness: Harness, secure: Tls | None
) -> None:
    stop = asyncio.Event()

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await stop.wait()

    target = await harness.target(never_read)
    chain = await chain_for(harness, target, secure)
    front = chain.front[0]
    stream = front.open_stream()
    await wait_until(lambda: chain.back[0].session.stream_count == 1, "the stream is open")
    # Forge DATA straight onto the transport, far beyond what the window, the target's socket
    # buffers and the back's write limit can take while the target reads nothing.
    chunk = payload(60 * 1024, 11)
    frame = HEADER.pack(MUX_VERSION, 0, 0, stream.id, len(chunk)) + chunk
    for _ in range(64 * MB // len(chunk)):
        if (transport := front.transport) is None:
            break
        transport.write(frame)
        await asyncio.sleep(0)
    await wait_until(lambda: front.transport is None, "the back closed the session")
    assert chain.back[0].session.error is not None
    assert chain.back[0].session.error.code == "flow_control_error"
    stop.set()
