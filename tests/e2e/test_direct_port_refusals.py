"""What the exposing agent's direct port refuses (protocol.md §20-21): garbage, a silent client,
an unknown tunnel, a peer of another CA or one the hub never named. Each is closed without the
target hearing of it, and the port goes on serving real peers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import uuid

import pytest

from portway.agent import direct_port
from portway.net import identity
from portway.wire.assignment_messages import DirectOpen
from portway.wire.messages import encode
from tests.net.e2e_certs import Authority

from .agent_pair import SECRET, AgentPair, Echo, round_trip
from .in_process import WAIT, until
from .test_direct_path import paths, reached_tunnel

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def direct_port_of(pair: AgentPair) -> int:
    port = pair.exposing.direct_port
    assert port is not None
    return port.port


async def closed(reader: asyncio.StreamReader) -> None:
    """The port ends the connection (FIN or RST) without a byte of answer beyond TLS's."""
    with contextlib.suppress(ConnectionResetError):
        async with asyncio.timeout(WAIT):
            while await reader.read(65536):
                pass


async def still_serves(pair: AgentPair, port: int, target: Echo) -> None:
    """A real reach over the direct path still works after the refusals."""
    accepted = target.accepted
    assert await round_trip(port, SECRET) == SECRET
    assert paths(pair)[-1] == "direct"
    assert target.accepted == accepted + 1


async def test_garbage_and_silence_are_closed(
    pair: AgentPair, echo: tuple[Echo, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, target_port = echo
    _, port = await reached_tunnel(pair, target_port, "tough")
    accepted = target.accepted
    monkeypatch.setattr(direct_port, "OPEN_TIMEOUT", 0.5)
    direct = direct_port_of(pair)
    for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\xff" * 70_000, b"\x00\x00\x00\x05\x24{}"):
        reader, writer = await asyncio.open_connection("127.0.0.1", direct)
        writer.write(junk)
        await closed(reader)
        writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", direct)  # says nothing
    await closed(reader)
    writer.close()
    assert target.accepted == accepted
    await still_serves(pair, port, target)


async def test_an_unknown_tunnel_and_a_stranger_are_refused(
    pair: AgentPair, echo: tuple[Echo, int]
) -> None:
    target, target_port = echo
    tunnel, port = await reached_tunnel(pair, target_port, "guarded-port")
    accepted = target.accepted
    direct = direct_port_of(pair)
    reader, writer = await asyncio.open_connection("127.0.0.1", direct)
    writer.write(encode(DirectOpen(str(uuid.uuid4()), "c1")))  # a tunnel it does not serve
    await closed(reader)
    writer.close()
    # A peer with a certificate of another CA, for the right tunnel: the handshake fails.
    stranger = Authority("not the hub").issue(uuid.uuid4())
    mine = pair.reaching.identity
    assert mine is not None
    context = stranger.context(server=False, trust=mine.peers_ca.encode())

    def connect() -> None:  # blocking, in a thread: the agents run on this loop
        with socket.create_connection(("127.0.0.1", direct), timeout=WAIT) as sock:
            sock.sendall(encode(DirectOpen(tunnel, "c2")))
            hostname = identity.tunnel_hostname(tunnel)
            with context.wrap_socket(sock, server_hostname=hostname) as tls:
                tls.sendall(b"\x01" + SECRET)
                # TLS 1.3: the server's refusal of our certificate arrives here, as an alert
                # or as the end of the connection.
                assert tls.recv(1) == b""

    with contextlib.suppress(ssl.SSLError, ConnectionResetError):
        await asyncio.to_thread(connect)
    assert target.accepted == accepted and SECRET not in target.received
    await still_serves(pair, port, target)


async def test_a_certified_peer_the_hub_never_named_is_refused(
    pair: AgentPair, echo: tuple[Echo, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent of the same hub, with a valid certificate, that was never handed the tunnel's
    candidates (no grant): refused after the handshake, the target untouched."""
    target, target_port = echo
    tunnel, port = await reached_tunnel(pair, target_port, "ungranted")
    monkeypatch.setattr(direct_port, "GRANT_WAIT", 0.2)
    port_of_exposing = pair.exposing.direct_port
    assert port_of_exposing is not None
    port_of_exposing.access.peers = {}  # as if the hub had granted nobody
    accepted = target.accepted
    assert await pair.reaching.direct.carry(tunnel, "c3", _Client()) is False  # type: ignore[arg-type]
    await until(
        lambda: [
            i for who, e, i in pair.events
            if (who, e) == ("exposing", "e2e_refused") and "did not name" in i["error"]
        ],
        "the exposing agent to refuse the peer nobody granted",
    )  # fmt: skip
    assert target.accepted == accepted
    port_of_exposing.access.peers = {tunnel: frozenset({identity.agent_uri(pair.ids["reaching"])})}
    await still_serves(pair, port, target)


class _Client:
    """A local client that has gone before the direct path could take it."""

    def detach(self) -> None:
        return None
