"""`python -m bench.tls_memory`: memory of an idle TLS connection with no Portway code at all.

Opens N loopback connections (client and server in this one process, on uvloop and on plain
asyncio, with and without TLS 1.3 on a throwaway P-256 certificate) and prints the RSS growth
per connection end. It shows how much of Portway's per-connection memory with agent TLS on is
the TLS transport itself, as opposed to the splice and the data plane.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench.procs import raise_nofile, rss_kib
from portway.net.tls import ensure_hub_certificates, server_context


class Idle(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport


def contexts(work: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The hub's own server context and a client trusting its CA (as agents do)."""
    certs = ensure_hub_certificates(work, hostnames=("localhost",))
    server = server_context(certs.cert, certs.key)
    client = ssl.create_default_context(cafile=str(certs.ca_cert))
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    return server, client


async def per_connection(count: int, tls: tuple[ssl.SSLContext, ssl.SSLContext] | None) -> float:
    loop = asyncio.get_running_loop()
    server_ctx, client_ctx = tls if tls else (None, None)
    server = await loop.create_server(Idle, "127.0.0.1", 0, ssl=server_ctx, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    hostname = "localhost" if client_ctx else None

    async def connect() -> asyncio.BaseTransport:
        transport, _ = await loop.create_connection(
            Idle, "127.0.0.1", port, ssl=client_ctx, server_hostname=hostname
        )
        return transport

    for transport in [await connect() for _ in range(50)]:  # warm up
        transport.close()
    await asyncio.sleep(0.5)
    before = rss_kib_self()
    held = [await connect() for _ in range(count)]
    await asyncio.sleep(1.0)
    after = rss_kib_self()
    for transport in held:
        transport.close()
    server.close()
    return (after - before) / count / 2  # both ends live in this process


def rss_kib_self() -> int:
    return rss_kib(os.getpid())


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tls_memory", description=__doc__)
    parser.add_argument("--connections", type=int, default=2000)
    args = parser.parse_args()
    raise_nofile()
    import uvloop

    runners: dict[str, Callable[[Coroutine[Any, Any, float]], float]] = {
        "uvloop": uvloop.run, "asyncio": asyncio.run,
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as work:
        tls = contexts(Path(work))
        for loop_name, run in runners.items():
            for mode, ctx in (("plain", None), ("TLS 1.3", tls)):
                kib = run(per_connection(args.connections, ctx))
                print(f"{loop_name:8} {mode:8} {kib:6.1f} KiB per idle connection end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
