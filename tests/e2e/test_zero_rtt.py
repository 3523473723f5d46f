"""A visitor of a public TCP port costs no round trip (docs/protocol.md §14): its bytes follow the
`assign` with no wait, the exposing agent holds them (within the stream's window, no credit
back) until its target took them, and the hub reads the agent's answer off the stream in
callbacks.

The tests look at both ends of a stream through an in-process hub and agent
(`in_process.Stack`) and hold the agent's dial back with a target that accepts late
(`in_process.LateTarget`); the last test runs real processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import struct
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import httpx
import pytest

from portway.agent.runtime import AgentRuntime
from portway.hub.dataplane.pairing import _Answer
from portway.testing.machines import Machine
from portway.testing.origins import EchoOrigin
from portway.wire.flow import INITIAL_WINDOW
from portway.wire.mux_sending import HIGH_WATER

from .in_process import WAIT, LateTarget, OlderAgent, Stack, hash_reply, start_stack, until
from .tunnels import expose, tunnel, wait_status

MB = 1024 * 1024
READ_MAX = 256 * 1024  # the most one read of a socket hands the hub


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
