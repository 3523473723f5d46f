"""A reaching agent, a hub that bridges (and taps) its streams and an exposing agent, on real
loopback sessions, for the end-to-end TLS tests (`test_e2e_*.py`); fixtures in conftest.py."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from portway.errors import PortwayError
from portway.net import e2e, identity
from portway.net.e2e import SecureTransport
from portway.net.mux import MuxConnection
from portway.net.mux_bridge import BridgeEnd, StreamBridge
from portway.net.mux_stream import MuxStream
from portway.net.mux_transport import StreamTransport
from portway.net.splice import Leg, Splice
from portway.wire.codes import Reason

from .e2e_certs import AgentCert, Authority
from .harness import Harness, wait_until

MB = 1024 * 1024
CHUNK = 64 * 1024
MARKER = b"<<plaintext marker the hub must never see>>"


@dataclass(frozen=True)
class Pki:
    tunnel: str  # the tunnel's server name
    reacher: AgentCert  # the reaching agent's certificate
    exposer: AgentCert  # the exposing agent's, for the tunnel
    other_tunnel: AgentCert  # the exposing agent's, for another tunnel
    foreign_reacher: AgentCert  # as `reacher` and `exposer`, from another CA
    foreign_exposer: AgentCert


def make_pki() -> Pki:
    """Certificates for one tunnel's two agents, and the wrong ones the refusals need."""
    ca, other_ca = Authority(), Authority("another CA")
    reacher, exposer, tunnel = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    return Pki(
        tunnel=identity.tunnel_hostname(tunnel),
        reacher=ca.issue(reacher),
        exposer=ca.issue(exposer, tunnel_id=tunnel),
        other_tunnel=ca.issue(exposer, tunnel_id=uuid.uuid4()),
        foreign_reacher=other_ca.issue(reacher),
        foreign_exposer=other_ca.issue(exposer, tunnel_id=tunnel),
    )


class TapEnd(BridgeEnd):
    """A bridge end that keeps a copy of what the hub relays to its stream, and may flip one
    byte of it (at offset ``flip_at``), as a hostile hub would."""

    def __init__(self, bridge: StreamBridge) -> None:
        super().__init__(bridge)
        self.seen = bytearray()
        self.flip_at: int | None = None

    def send(self, data: bytes) -> None:
        at = self.flip_at
        if at is not None and len(self.seen) <= at < len(self.seen) + len(data):
            i = at - len(self.seen)
            data = data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :]
        self.seen += data
        super().send(data)


@dataclass
class Hub:
    reacher: MuxConnection  # the reaching agent's end of its session to the hub
    arrivals: asyncio.Queue[MuxStream]  # the streams the exposing agent accepted
    bridges: list[StreamBridge]

    def up(self) -> TapEnd:
        """The first bridge's end towards the exposing agent: what the reaching agent sent."""
        end = self.bridges[0].b
        assert isinstance(end, TapEnd)
        return end

    def down(self) -> TapEnd:
        end = self.bridges[0].a
        assert isinstance(end, TapEnd)
        return end


async def bridging_hub(harness: Harness) -> Hub:
    """reaching agent ⇄ hub ⇄ exposing agent: each stream the reaching agent opens is bridged
    by the hub to a new stream of its session to the exposing agent."""
    arrivals: asyncio.Queue[MuxStream] = asyncio.Queue()
    bridges: list[StreamBridge] = []

    def exposer_open(stream: MuxStream, first: memoryview) -> int:
        arrivals.put_nowait(stream)
        return 0  # the SYN's bytes wait in the stream for its sink

    to_exposer = await harness.session(exposer_open)

    def hub_open(stream: MuxStream, first: memoryview) -> int:
        bridge = StreamBridge()
        bridge.a, bridge.b = TapEnd(bridge), TapEnd(bridge)
        bridge.a.peer, bridge.b.peer = bridge.b, bridge.a
        bridges.append(bridge)
        bridge.join(bridge.a, stream)
        bridge.join(bridge.b, to_exposer.open_stream())
        return 0

    return Hub(await harness.session(hub_open), arrivals, bridges)


class Hold(asyncio.Protocol):
    """A stream's protocol until `secure` takes it: what arrived first becomes ``initial``
    (the agent's framed reader hands over the same bytes)."""

    def __init__(self) -> None:
        self.data = b""

    def data_received(self, data: bytes) -> None:
        self.data += data


class App(asyncio.Protocol):
    """An application on a secured transport: sends a payload as fast as the transport lets it
    (then EOF), keeps what it reads, and notes the most the transport held unsent."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.transport: SecureTransport | None = None
        self.out = memoryview(b"")
        self.sent = 0
        self.write_paused = False
        self.max_buffered = 0

    def send(self, transport: SecureTransport, data: bytes) -> None:
        self.transport, self.out = transport, memoryview(data)
        self._feed()

    def _feed(self) -> None:
        assert self.transport is not None
        while self.out and not self.write_paused:
            chunk, self.out = self.out[:CHUNK], self.out[CHUNK:]
            self.transport.write(chunk)
            self.sent += len(chunk)
            self.max_buffered = max(self.max_buffered, self.transport.get_write_buffer_size())
            if not self.out:
                self.transport.write_eof()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._feed()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


Outcome = SecureTransport | PortwayError


async def outcome(secured: Coroutine[Any, Any, SecureTransport]) -> Outcome:
    """`secure`'s result or error, for a task the harness awaits at teardown."""
    try:
        return await secured
    except PortwayError as exc:
        return exc


@dataclass
class Ends:
    client: SecureTransport
    server: SecureTransport
    client_app: App
    server_app: App


async def handshake(
    harness: Harness,
    hub: Hub,
    client_ctx: ssl.SSLContext,
    server_ctx: ssl.SSLContext,
    *,
    hostname: str,
    expect_client: str | None = None,
    expect_server: str | None = None,
) -> tuple[Outcome, Outcome, App, App]:
    """Both ends of a reach connection run `secure`; returns once both are done (the client's
    outcome, the server's, and their protocols)."""
    client_app, server_app = App(), App()

    async def serve() -> SecureTransport:
        stream = await hub.arrivals.get()
        hold = Hold()
        lower = StreamTransport(stream, hold)
        return await e2e.secure(
            lower,
            server_app,
            server_ctx,
            server_side=True,
            initial=hold.data,
            expect_uri=expect_client,
        )

    lower = StreamTransport(hub.reacher.open_stream(), asyncio.Protocol())
    client = harness.spawn(
        outcome(
            e2e.secure(
                lower,
                client_app,
                client_ctx,
                server_side=False,
                server_hostname=hostname,
                expect_uri=expect_server,
            )
        )
    )
    server = harness.spawn(outcome(serve()))
    return await client, await server, client_app, server_app


async def open_e2e(
    harness: Harness,
    hub: Hub,
    client_ctx: ssl.SSLContext,
    server_ctx: ssl.SSLContext,
    *,
    hostname: str,
    expect_client: str | None = None,
    expect_server: str | None = None,
) -> Ends:
    """A reach connection with end-to-end TLS; raises what the client's `secure` raised, else
    what the server's did."""
    client, server, client_app, server_app = await handshake(
        harness,
        hub,
        client_ctx,
        server_ctx,
        hostname=hostname,
        expect_client=expect_client,
        expect_server=expect_server,
    )
    for result in (client, server):
        if isinstance(result, PortwayError):
            raise result
    assert isinstance(client, SecureTransport) and isinstance(server, SecureTransport)
    return Ends(client, server, client_app, server_app)


async def open_default(harness: Harness, hub: Hub, pki: Pki) -> Ends:
    return await open_e2e(
        harness,
        hub,
        pki.reacher.context(server=False),
        pki.exposer.context(server=True),
        hostname=pki.tunnel,
        expect_client=pki.reacher.uri,
        expect_server=pki.exposer.uri,
    )


async def all_gone(harness: Harness, hub: Hub) -> None:
    """Nothing leaks: every stream of every session ended and every bridge closed."""
    await wait_until(lambda: not any(s.streams for s in harness.sessions), "every stream ended")
    assert not any(bridge.open for bridge in hub.bridges)


def stream_of(transport: SecureTransport) -> StreamTransport:
    lower = transport._lower
    assert isinstance(lower, StreamTransport)
    return lower


# -- the relayed exchange ---------------------------------------------------------------------


@dataclass
class Reach:
    port: int  # the reaching agent's local listener
    splices: list[Splice]  # the reaching side's, then the exposing side's, per connection


async def reach(harness: Harness, hub: Hub, pki: Pki, target_port: int) -> Reach:
    """Local client → splice → secured stream ⇄ hub ⇄ secured stream → splice → target, as the
    two agents will run it (the exposing side dials the target once the peer is checked)."""
    loop = asyncio.get_running_loop()
    client_ctx, server_ctx = pki.reacher.context(server=False), pki.exposer.context(server=True)
    result = Reach(0, [])

    def new_splice() -> Splice:
        splice = Splice()
        harness.splices.append(splice)
        result.splices.append(splice)
        return splice

    async def expose() -> None:
        stream = await hub.arrivals.get()
        hold = Hold()
        lower = StreamTransport(stream, hold)
        splice = new_splice()
        try:
            secured = await e2e.secure(
                lower,
                splice.a,
                server_ctx,
                server_side=True,
                initial=hold.data,
                expect_uri=pki.reacher.uri,
            )
        except PortwayError:
            splice.reset(Reason.DENIED)
            return
        splice.attach(splice.a, secured)  # in this step: then the dial, a late leg
        await loop.create_connection(splice.connector(splice.b), "127.0.0.1", target_port)

    def local_client() -> Leg:
        splice = new_splice()

        async def open_secured() -> None:
            lower = StreamTransport(hub.reacher.open_stream(), asyncio.Protocol())
            harness.spawn(expose())
            try:
                secured = await e2e.secure(
                    lower,
                    splice.b,
                    client_ctx,
                    server_side=False,
                    server_hostname=pki.tunnel,
                    expect_uri=pki.exposer.uri,
                )
            except PortwayError:
                splice.reset(Reason.DENIED)
                return
            splice.attach(splice.b, secured)

        harness.spawn(open_secured())
        return splice.a

    server = await loop.create_server(local_client, "127.0.0.1", 0)
    harness.servers.append(server)
    result.port = server.sockets[0].getsockname()[1]
    return result


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    writer.write_eof()
