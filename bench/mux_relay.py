"""The version 2 floor: a relay pair carrying every connection as a stream over a few sessions.

It uses Portway's own multiplexer (`portway.wire.mux` through `portway.net.mux`) and nothing
else of Portway: no control messages, tunnels, policy or counters. Laid out like the public
path with data plane v2: the *back* (in the agent's place) dials the *front* (the hub's place)
with a few long-lived sessions, TLS 1.3 when asked, pinned and resuming as agents do; the front
accepts clients and opens one stream per client on the session with the fewest streams; the
back dials the origin for each stream. A stream's first two bytes name the origin's port.
What the pair makes is what data plane v2 can make here before Portway's own work per
connection (assignment, routing, counters) is added, so `make bench` runs it beside Portway.

Run as ``python -m bench.mux_relay front SESSION_PORT LISTEN:TARGET [...] [--sessions N]
[--tls DIR]`` and ``python -m bench.mux_relay back SESSION_PORT [--sessions N] [--tls DIR]``;
the front prints ``listening`` once its session port is up (the back may dial it: a bare
connection to it without TLS would count as a session, so wait for this line instead of
probing the port) and ``ready`` once the back's sessions are in and its listeners are up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import ssl
import struct
from collections.abc import Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import uvloop

from portway.net.mux import MuxConnection
from portway.net.mux_socket import SocketStream
from portway.net.mux_stream import MuxStream
from portway.net.tls import client_context, ensure_hub_certificates
from portway.net.tls import server_context as hub_server_context
from portway.wire.codes import Reason
from portway.wire.mux import MuxSession

PORT = struct.Struct(">H")
MAX_STREAMS = 65_536


async def until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def refuse(stream: MuxStream, first: memoryview) -> int:
    stream.reset(Reason.DENIED)  # neither end accepts streams the other way
    return 0


class Dropped(asyncio.Protocol):
    """A client arriving while no session is up: closed at once (a protocol factory that
    raises instead leaves the connection open and unanswered)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


async def front(
    session_port: int, maps: list[tuple[int, int]], sessions: int, tls: ssl.SSLContext | None
) -> None:
    loop = asyncio.get_running_loop()
    live: list[MuxConnection] = []
    arrived = asyncio.Event()

    def made(connection: MuxConnection) -> None:
        live.append(connection)
        if len(live) >= sessions:
            arrived.set()

    def session() -> MuxConnection:
        connection = MuxConnection(
            MuxSession(client=False), refuse, lambda _exc: live.remove(connection),
            on_made=made, name="front",
        )  # fmt: skip
        return connection

    def client(target: int) -> asyncio.Protocol:
        if not live:
            return Dropped()
        connection = min(live, key=lambda c: c.session.stream_count)
        return SocketStream(connection.open_stream(PORT.pack(target)))

    gate = await loop.create_server(session, "127.0.0.1", session_port, ssl=tls)
    print("listening", flush=True)
    await arrived.wait()
    servers = [
        await loop.create_server(partial(client, target), "127.0.0.1", port, backlog=4096)
        for port, target in maps
    ]
    print("ready", flush=True)
    await until_stopped()
    for server in (gate, *servers):
        server.close()


async def back(session_port: int, sessions: int, tls: ssl.SSLContext | None) -> None:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def opened(stream: MuxStream, first: memoryview) -> int:
        (target,) = PORT.unpack_from(first)
        bridge = SocketStream(stream)

        async def dial() -> None:
            try:
                await loop.create_connection(lambda: bridge, "127.0.0.1", target)
            except OSError:
                stream.reset(Reason.TARGET_REFUSED)

        tasks.add(task := loop.create_task(dial()))
        task.add_done_callback(tasks.discard)
        return PORT.size

    for _ in range(sessions):
        await loop.create_connection(
            # More streams a session than the default 4,096: the idle-memory scenario opens
            # 10,000 and more over two sessions.
            lambda: MuxConnection(MuxSession(client=True, max_streams=MAX_STREAMS), opened,
                                  name="back"),
            "127.0.0.1", session_port, ssl=tls, server_hostname="localhost" if tls else None,
        )  # fmt: skip
    await until_stopped()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mux_relay", description=__doc__)
    parser.add_argument("role", choices=("front", "back"))
    parser.add_argument("session_port", type=int)
    parser.add_argument("maps", nargs="*", metavar="LISTEN:TARGET")
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--tls", type=Path, metavar="DIR")
    args = parser.parse_args()
    tls = None
    if args.tls:
        certs = ensure_hub_certificates(args.tls, hostnames=("localhost",))
        if args.role == "front":
            tls = hub_server_context(certs.cert, certs.key)
        else:
            tls = client_context(certs.ca_pem(), certs.fingerprint, check_hostname=False)
    if args.role == "front":
        maps = [(int(a), int(b)) for a, b in (m.split(":") for m in args.maps)]
        run = front(args.session_port, maps, args.sessions, tls)
    else:
        run = back(args.session_port, args.sessions, tls)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_with_transports(run))


async def _with_transports(run: Coroutine[Any, Any, None]) -> None:
    """`BENCH_TRANSPORTS=aiofastnet` runs the pair on aiofastnet's transports over uvloop (its
    TLS in C against uvloop's `SSLObject` one): the measurement data plane v2 asks for."""
    if os.environ.get("BENCH_TRANSPORTS") == "aiofastnet":
        # Optional, installed only for this measurement (`pip install aiofastnet`).
        importlib.import_module("aiofastnet").patch_loop()
    await run


if __name__ == "__main__":
    main()
