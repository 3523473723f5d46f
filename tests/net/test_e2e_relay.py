"""End-to-end TLS between two agents over streams a hub relays (net/e2e.py): bytes, backpressure,
names, and what a relay that tampers or stalls gets."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from pathlib import Path

import pytest

from portway.net import e2e, identity
from portway.net.e2e import E2eFailed
from portway.net.mux_transport import StreamResetError, StreamTransport
from portway.wire.codes import Reason
from portway.wire.mux_sending import HIGH_WATER

from .e2e_pair import (
    CHUNK,
    MARKER,
    MB,
    App,
    Hub,
    Pki,
    all_gone,
    open_default,
    open_e2e,
    stream_of,
)
from .harness import Harness, payload, wait_until

pytestmark = pytest.mark.timeout(60)


async def test_10mb_each_way_byte_exact_and_the_hub_relays_no_plaintext(
    harness: Harness, hub: Hub, pki: Pki
) -> None:
    up = payload(5 * MB, 1) + MARKER + payload(5 * MB, 2)
    down = payload(10 * MB, 3) + MARKER
    ends = await open_default(harness, hub, pki)
    client_app, server_app = ends.client_app, ends.server_app
    client_app.send(ends.client, up)
    server_app.send(ends.server, down)
    await wait_until(lambda: client_app.eof and server_app.eof, "both directions ended")
    assert bytes(server_app.data) == up
    assert bytes(client_app.data) == down
    # Both close_notify went, then both FINs: a clean end on both sides.
    assert await client_app.lost is None
    assert await server_app.lost is None
    # The hub relayed TLS records only, somewhat more than the plaintext.
    assert MARKER not in hub.up().seen and MARKER not in hub.down().seen
    assert len(up) < len(hub.up().seen) < len(up) * 1.01 + 10_000
    assert len(down) < len(hub.down().seen) < len(down) * 1.01 + 10_000
    for app in (client_app, server_app):  # records go to the stream's queue, paused past its mark
        assert app.max_buffered < HIGH_WATER + 2 * CHUNK
    await all_gone(harness, hub)


async def test_a_paused_reader_stops_its_sender(harness: Harness, hub: Hub, pki: Pki) -> None:
    ends = await open_default(harness, hub, pki)
    ends.server.pause_reading()  # in the step `secure` returned in: before any byte is read
    client_app, server_app = ends.client_app, ends.server_app
    data = payload(8 * MB, 4)
    client_app.send(ends.client, data)
    server_lower = stream_of(ends.server)
    await wait_until(
        lambda: client_app.write_paused and hub.up().full and not server_lower.is_reading(),
        "the sender is paused and the hub holds the exposing side's stream",
    )
    assert server_app.data == b""
    # Stalled at the windows and queues of the two streams (256 KiB each, and HIGH_WATER).
    assert client_app.sent < 4 * (256 * 1024 + HIGH_WATER) + 2 * CHUNK
    ends.server.resume_reading()
    await wait_until(lambda: server_app.eof, "the rest arrived")
    assert bytes(server_app.data) == data
    ends.server.close()
    assert await server_app.lost is None
    assert await client_app.lost is None
    await all_gone(harness, hub)


async def test_a_paused_reader_that_half_closes_after_the_peer_finished_loses_nothing(
    harness: Harness, hub: Hub, pki: Pki
) -> None:
    """The peer's bytes, close_notify and FIN wait in the paused reader's stream; our FIN waits
    for that close_notify, so writing our EOF meanwhile does not end the stream under them."""
    ends = await open_default(harness, hub, pki)
    ends.server.pause_reading()
    data = payload(200_000, 8)
    ends.client.write(data)
    ends.client.close()  # close_notify and FIN at once
    server_lower = stream_of(ends.server)
    await wait_until(lambda: server_lower._eof_in, "the FIN reached the paused reader's stream")
    ends.server.write_eof()
    ends.server.resume_reading()
    await wait_until(lambda: ends.server_app.eof, "the reader read up to the close_notify")
    assert bytes(ends.server_app.data) == data
    assert await ends.server_app.lost is None
    assert await ends.client_app.lost is None
    await all_gone(harness, hub)


async def test_peer_uris_name_the_other_agent_on_both_sides(
    harness: Harness, hub: Hub, pki: Pki
) -> None:
    ends = await open_default(harness, hub, pki)
    assert e2e.peer_uris(ends.client) == {pki.exposer.uri}
    assert e2e.peer_uris(ends.server) == {pki.reacher.uri}
    tls = ends.client.get_extra_info("ssl_object")
    assert tls.version() == "TLSv1.3" and tls.selected_alpn_protocol() == e2e.ALPN
    # A splice must see a transport that half-closes: no `sslcontext`, and write_eof works.
    assert ends.client.get_extra_info("sslcontext") is None and ends.client.can_write_eof()
    ends.client.write(b"bye")
    ends.client.close()
    await wait_until(lambda: ends.server_app.eof, "the server read the close_notify")
    assert ends.server_app.data == b"bye"
    ends.server.close()
    assert await ends.client_app.lost is None
    assert await ends.server_app.lost is None
    await all_gone(harness, hub)


async def test_certificates_the_hub_issues_work_end_to_end(
    harness: Harness, hub: Hub, tmp_path: Path
) -> None:
    """Certificates from `net/identity.py`'s CA (what `welcome` and `desired_state` carry)."""
    ca = identity.HubIdentityCa.load(tmp_path)
    reacher, exposer, workspace, tunnel = (uuid.uuid4() for _ in range(4))

    def context(agent: uuid.UUID, *, server: bool) -> ssl.SSLContext:
        key = identity.new_key()
        certificate = ca.issue(
            identity.parse_request(identity.request_for(key)),
            uris=(identity.agent_uri(agent), identity.workspace_uri(workspace)),
            hostnames=(identity.tunnel_hostname(tunnel),) if server else (),
        )
        return e2e.peer_context(
            certificate.encode(), key, ca.certificate_pem.encode(), server=server
        )

    ends = await open_e2e(
        harness,
        hub,
        context(reacher, server=False),
        context(exposer, server=True),
        hostname=identity.tunnel_hostname(tunnel),
        expect_client=identity.agent_uri(reacher),
        expect_server=identity.agent_uri(exposer),
    )
    assert e2e.peer_uris(ends.server) == {
        identity.agent_uri(reacher),
        identity.workspace_uri(workspace),
    }
    ends.client.close()
    ends.server.close()
    assert await ends.client_app.lost is None
    assert await ends.server_app.lost is None
    await all_gone(harness, hub)


# -- a relay that stalls or tampers --------------------------------------------------------------


async def test_a_silent_peer_times_the_handshake_out(harness: Harness, hub: Hub, pki: Pki) -> None:
    lower = StreamTransport(hub.reacher.open_stream(), asyncio.Protocol())
    with pytest.raises(E2eFailed, match=r"no end-to-end handshake .* in 0\.2 s"):
        await e2e.secure(
            lower,
            App(),
            pki.reacher.context(server=False),
            server_side=False,
            server_hostname=pki.tunnel,
            handshake_timeout=0.2,
        )
    stream = await hub.arrivals.get()  # never answered; the client's reset ended it
    await wait_until(lambda: stream.id not in stream.connection.streams, "the stream was reset")
    await all_gone(harness, hub)


# -- a hostile hub ----------------------------------------------------------------------------


async def test_a_flipped_byte_breaks_the_connection_and_reaches_no_one(
    harness: Harness, hub: Hub, pki: Pki
) -> None:
    ends = await open_default(harness, hub, pki)
    hub.up().flip_at = len(hub.up().seen) + 100_000
    data = payload(1 * MB, 5)
    ends.client_app.send(ends.client, data)
    lost = await ends.server_app.lost
    assert isinstance(lost, E2eFailed) and "broke" in lost.message
    assert data.startswith(ends.server_app.data) and len(ends.server_app.data) < 100_000
    lost = await ends.client_app.lost
    assert isinstance(lost, StreamResetError) and lost.reason is Reason.PROTOCOL_ERROR
    await all_gone(harness, hub)


async def test_a_fin_without_close_notify_is_a_truncation_not_an_end(
    harness: Harness, hub: Hub, pki: Pki
) -> None:
    ends = await open_default(harness, hub, pki)
    ends.client.write(b"partial")
    await wait_until(lambda: ends.server_app.data == b"partial", "the bytes arrived")
    stream = hub.up().stream
    assert stream is not None
    stream.write_eof()  # the hub ends the stream on its own
    lost = await ends.server_app.lost
    assert isinstance(lost, E2eFailed) and "truncated" in lost.message
    assert not ends.server_app.eof
    assert isinstance(await ends.client_app.lost, StreamResetError)
    await all_gone(harness, hub)


# -- splicing sockets to the secured streams --------------------------------------------------
