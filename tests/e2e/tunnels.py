"""Tunnels of real processes, driven as a user would: looked up and waited for through the API,
served by `portway expose`, reached with `portway reach`, and one echo through a port."""

from __future__ import annotations

import socket
from typing import Any

import httpx

from portway.testing.machines import Machine
from portway.testing.postgres import PostgresCluster
from portway.testing.programs import unavailable
from portway.testing.waiting import wait_until


def tunnel(api: httpx.Client, ref: str) -> dict[str, Any]:
    response = api.get(f"/v1/tunnels/{ref}")
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def wait_status(api: httpx.Client, ref: str, status: str, timeout: float = 20) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        found = tunnel(api, ref)
        return found if found["status"] == status else None

    result = wait_until(reached, timeout=timeout, what=f"{ref} to become {status}")
    assert result is not None
    return result


def expose(server: Machine, target: str, name: str, *extra: str) -> None:
    server.start("expose", target, "--name", name, *extra).wait_for("Connected to the hub.")


def reach(laptop: Machine, name: str, port: int) -> None:
    laptop.start("reach", name, "--port", str(port)).wait_for("Connected to the hub.")


def echo_once(port: int, payload: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # half-close: the reply must still arrive whole
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def postgres(cluster: object) -> PostgresCluster:
    """The session's PostgreSQL cluster (the `postgres_cluster` fixture), or the test is
    unavailable (skipped locally, failed under CI) when the server is not installed."""
    if not isinstance(cluster, PostgresCluster):
        unavailable("PostgreSQL server (initdb) is not installed (apt-get install postgresql)")
    assert isinstance(cluster, PostgresCluster)
    return cluster
