"""End-to-end TLS refuses the wrong peer (net/e2e.py): another tunnel, another CA, no certificate,
another agent."""

from __future__ import annotations

import ssl

import pytest

from portway.net import e2e
from portway.net.e2e import PeerRejected, SecureTransport
from portway.net.mux_transport import StreamResetError
from portway.wire.codes import Reason

from .e2e_certs import AgentCert
from .e2e_pair import Hub, Pki, all_gone, handshake, open_e2e
from .harness import Harness

pytestmark = pytest.mark.timeout(60)


async def refused_by_client(harness: Harness, hub: Hub, exposer: AgentCert, pki: Pki) -> str:
    """The client refuses the server's certificate and resets the stream (``denied``): both
    raise, the client saying why."""
    refused, refused_by_peer, _, _ = await handshake(
        harness,
        hub,
        pki.reacher.context(server=False),
        exposer.context(server=True),
        hostname=pki.tunnel,
    )
    assert isinstance(refused, PeerRejected) and refused.code == "e2e_peer_rejected"
    assert isinstance(refused_by_peer, PeerRejected)
    assert refused_by_peer.message == (
        "end-to-end TLS: the reaching side (TLS client) refused us (stream reset: denied)"
    )
    await all_gone(harness, hub)
    assert hub.bridges[0].result is Reason.DENIED
    return refused.message


async def test_the_client_refuses_the_certificate_of_another_tunnel(
    harness: Harness, hub: Hub, pki: Pki
) -> None:
    message = await refused_by_client(harness, hub, pki.other_tunnel, pki)
    assert "exposing side" in message
    assert "Hostname mismatch" in message and pki.tunnel in message


async def test_the_client_refuses_a_server_of_another_ca(
    harness: Harness, hub: Hub, pki: Pki
) -> None:
    message = await refused_by_client(harness, hub, pki.foreign_exposer, pki)
    # Its server sends its own CA along (OpenSSL completes the chain from its trust store).
    assert "exposing side" in message and "self-signed certificate in certificate chain" in message


async def refused_by_server(
    harness: Harness, hub: Hub, client_ctx: ssl.SSLContext, pki: Pki
) -> str:
    """The server refuses the client's certificate. In TLS 1.3 the client finished first: its
    `secure` returns and the stream's reset (``denied``) follows, or, when the reset came
    while its task woke up, it raises."""
    client, refused, client_app, _ = await handshake(
        harness, hub, client_ctx, pki.exposer.context(server=True), hostname=pki.tunnel
    )
    assert isinstance(refused, PeerRejected) and refused.code == "e2e_peer_rejected"
    if isinstance(client, SecureTransport):
        lost = await client_app.lost
        assert isinstance(lost, StreamResetError) and lost.reason is Reason.DENIED
    else:
        assert isinstance(client, PeerRejected)
    await all_gone(harness, hub)
    return refused.message


async def test_the_server_refuses_a_client_without_a_certificate(
    harness: Harness, hub: Hub, pki: Pki
) -> None:
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.minimum_version = ssl.TLSVersion.TLSv1_3
    anonymous.set_alpn_protocols([e2e.ALPN])
    anonymous.load_verify_locations(cadata=pki.exposer.trust_pem.decode())
    message = await refused_by_server(harness, hub, anonymous, pki)
    assert "reaching side" in message and "peer did not return a certificate" in message


async def test_the_server_refuses_a_client_of_another_ca(
    harness: Harness, hub: Hub, pki: Pki
) -> None:
    # The foreign client still trusts the hub's CA: only its own certificate is wrong.
    client_ctx = pki.foreign_reacher.context(server=False, trust=pki.exposer.trust_pem)
    message = await refused_by_server(harness, hub, client_ctx, pki)
    assert "reaching side" in message and "unable to get local issuer certificate" in message


async def test_a_peer_of_the_right_ca_naming_another_agent_is_refused(
    harness: Harness, hub: Hub, pki: Pki
) -> None:
    with pytest.raises(PeerRejected, match=r"names urn:portway:agent:.*, not urn:portway:agent:x"):
        await open_e2e(
            harness,
            hub,
            pki.reacher.context(server=False),
            pki.exposer.context(server=True),
            hostname=pki.tunnel,
            expect_server="urn:portway:agent:x",
        )
    await all_gone(harness, hub)
