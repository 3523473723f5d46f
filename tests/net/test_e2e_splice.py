"""End-to-end TLS legs spliced to plain TCP sockets (net/e2e.py with net/splice.py), as agents
will join a local client and a target to them."""

from __future__ import annotations

import asyncio

import pytest

from portway.net.mux_transport import StreamTransport
from portway.wire.codes import Reason

from .e2e_pair import MARKER, MB, App, Hub, Pki, all_gone, echo, reach
from .harness import Harness, check_reply, exchange, hash_server, payload, rst_close, wait_until

pytestmark = pytest.mark.timeout(60)


async def test_a_socket_spliced_to_each_end_echoes_and_closing_the_client_ends_all(
    harness: Harness, hub: Hub, pki: Pki
) -> None:
    path = await reach(harness, hub, pki, await harness.target(echo))
    reader, writer = await harness.connect(path.port)
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    writer.close()  # its FIN: half-close travels as close_notify, the echo target ends too
    await wait_until(lambda: len(path.splices) == 2, "both splices exist")
    for splice in path.splices:
        assert await splice.wait_closed() is None
    assert (path.splices[0].bytes_a_to_b, path.splices[1].bytes_b_to_a) == (4, 4)
    await all_gone(harness, hub)


async def test_10mb_each_way_through_spliced_sockets_with_half_close(
    harness: Harness, hub: Hub, pki: Pki
) -> None:
    up, down = payload(10 * MB, 6) + MARKER, payload(10 * MB, 7)
    path = await reach(harness, hub, pki, await harness.target(hash_server(down)))
    reader, writer = await harness.connect(path.port)
    check_reply(await exchange(reader, writer, up), down, up)  # the target read up to our EOF
    for splice in path.splices:
        assert await splice.wait_closed() is None
    assert MARKER not in hub.up().seen
    await all_gone(harness, hub)


async def test_a_client_reset_resets_the_target(harness: Harness, hub: Hub, pki: Pki) -> None:
    target_lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def wait_for_loss(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        try:
            await reader.read()
            target_lost.set_result("eof")
        except ConnectionResetError:
            target_lost.set_result("reset")

    path = await reach(harness, hub, pki, await harness.target(wait_for_loss))
    reader, writer = await harness.connect(path.port)
    assert await reader.readexactly(5) == b"hello"
    rst_close(writer)
    assert await target_lost == "reset"
    for splice in path.splices:
        assert await splice.wait_closed() is Reason.RESET
    await all_gone(harness, hub)


async def test_start_tls_takes_no_stream_transport(harness: Harness, hub: Hub, pki: Pki) -> None:
    """Why net/e2e.py has a TLS layer of its own: neither asyncio nor uvloop starts TLS over a
    transport that is not one of their sockets'."""
    lower = StreamTransport(hub.reacher.open_stream(), asyncio.Protocol())
    with pytest.raises(TypeError, match="not supported by start_tls"):
        await asyncio.get_running_loop().start_tls(lower, App(), pki.reacher.context(server=False))
    lower.abort()
    await all_gone(harness, hub)
