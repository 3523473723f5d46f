"""The bench's Python floor: a bare relay on uvloop, with no Portway code.

Two of them chained (`paths.relay`) are laid out like the public path, client -> hub -> agent
-> target, with TLS 1.3 between the two when asked (Portway's own certificate, and a pinned
client context that resumes sessions, as agents use): a connection in, one out, each read
written to the other side at once, backpressure both ways. What such a pair makes is about the
most a Python relay of this design can make on the machine, so Portway's figures can be read
against it in the same run; the edge's HTTP work, for one, comes on top of it. Two differences
from Portway: the front dials the back for each connection (a resumed TLS handshake with TLS
on, where Portway takes a pooled channel), so new connections per second are no floor; and the
front is the TLS client, where the hub is the server.

Run as ``python -m bench.relay LISTEN:TARGET [...] [--tls-server DIR | --tls-client DIR]``: it
prints ``ready`` once listening. ``--tls-server`` accepts TLS with the certificates kept in
DIR (made there if missing); ``--tls-client`` dials its targets with TLS, trusting DIR's CA.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import cast

import uvloop

from portway.net.tls import client_context, ensure_hub_certificates, remember_session
from portway.net.tls import server_context as hub_server_context


class Side(asyncio.Protocol):
    """One socket of a relayed connection; `peer` is the other one."""

    def __init__(self) -> None:
        self.peer: Side | None = None
        self.transport: asyncio.Transport | None = None
        self.early: list[bytes] = []  # read before the outgoing connection was up
        self.remember = False  # a TLS client: save the session on the first bytes back
        self.ended = False  # EOF received
        self.lost = False
        self.on_made: Callable[[], None] | None = None  # an incoming side: dial its target

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self.on_made is not None:
            # Dialled only now: a TLS server side is made after its handshake, and one whose
            # client leaves mid-handshake is never made (nor lost), so nothing would close it.
            self.on_made()
        peer = self.peer  # an outgoing side: what the client sent while it was dialled
        if peer is not None and peer.early:
            self.transport.writelines(peer.early)
            peer.early.clear()

    def data_received(self, data: bytes) -> None:
        if self.remember:
            self.remember = False
            remember_session(self.transport)
        peer = self.peer
        if peer is None or peer.transport is None:
            self.early.append(data)
        else:
            peer.transport.write(data)

    def eof_received(self) -> bool:
        """Half-close the other way; both sides closed once both ended (as Portway's splice)."""
        self.ended = True
        peer = self.peer
        assert self.transport is not None
        if peer is None or peer.transport is None or not peer.transport.can_write_eof():
            return False  # TLS cannot half-close: close (the peer follows in connection_lost)
        if peer.ended or not self.transport.can_write_eof():
            peer.transport.close()
            return False
        peer.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


async def relay(
    maps: list[tuple[int, int]], listen_tls: ssl.SSLContext | None,
    dial_tls: ssl.SSLContext | None,
) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()

    async def dial(incoming: Side, target: int) -> None:
        outgoing = Side()
        outgoing.peer, outgoing.remember = incoming, dial_tls is not None
        try:
            await loop.create_connection(
                lambda: outgoing, "127.0.0.1", target, ssl=dial_tls,
                server_hostname="localhost" if dial_tls else None,
            )  # fmt: skip
        except OSError:
            if incoming.transport is not None:
                incoming.transport.close()
            return
        assert outgoing.transport is not None
        if incoming.lost:
            outgoing.transport.close()  # the client left while this was dialled
            return
        incoming.peer = outgoing
        if incoming.early:  # the client's first bytes
            outgoing.transport.writelines(incoming.early)
            incoming.early.clear()

    def accepted(target: int) -> Side:
        incoming = Side()

        def made() -> None:
            tasks.add(task := loop.create_task(dial(incoming, target)))
            task.add_done_callback(tasks.discard)

        incoming.on_made = made
        return incoming

    tasks: set[asyncio.Task[None]] = set()
    servers = []
    for port, target in maps:
        factory = partial(accepted, target)
        servers.append(await loop.create_server(factory, "127.0.0.1", port, ssl=listen_tls,
                                                backlog=4096))  # fmt: skip
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__)
    parser.add_argument("maps", nargs="+", metavar="LISTEN:TARGET")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--tls-server", type=Path, metavar="DIR")
    tls.add_argument("--tls-client", type=Path, metavar="DIR")
    args = parser.parse_args()
    maps = [(int(a), int(b)) for a, b in (m.split(":") for m in args.maps)]
    listen_tls = dial_tls = None
    if folder := args.tls_server or args.tls_client:
        certs = ensure_hub_certificates(folder, hostnames=("localhost",))
        if args.tls_server:
            listen_tls = hub_server_context(certs.cert, certs.key)
        else:
            dial_tls = client_context(certs.ca_pem(), certs.fingerprint, check_hostname=False)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(relay(maps, listen_tls, dial_tls))


if __name__ == "__main__":
    main()
