"""The edge keeps its upstream channel across the requests of one client connection: requests
on a kept-alive connection reach the target over one connection, a target that closes its
keep-alive connections costs no 502, Host switching on one connection reaches each tunnel's own
target, and an idle channel of a revoked share is closed by the sweep."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from portway.testing.hub import HubProcess
from portway.testing.machines import Machine
from portway.testing.waiting import wait_until
from tests.e2e.test_edge import edge_client, edge_port, share

pytestmark = pytest.mark.e2e


class _Counting(BaseHTTPRequestHandler):
    """Answers JSON naming its origin and how many requests its connection carried. Paths:
    `/close` answers with `Connection: close`; `/drop` closes after answering without saying
    so; `/flaky` closes without answering when its connection already carried a request (a
    target that closed an idle keep-alive connection just as the next request came)."""

    protocol_version = "HTTP/1.1"
    server: CountingServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.served = 0
        self.used = False  # the agent's target probes connect, or send one `HEAD /`

    def finish(self) -> None:
        if self.used:
            with self.server.lock:
                self.server.open -= 1
        super().finish()

    def _any(self) -> None:
        if not self.used and self.headers.get("User-Agent") != "portway-probe":
            self.used = True
            with self.server.lock:
                self.server.accepted += 1
                self.server.open += 1
        size = int(self.headers.get("Content-Length") or 0)
        if size:
            self.rfile.read(size)
        if self.path.startswith("/flaky") and self.served:
            self.close_connection = True
            return
        self.served += 1
        body = json.dumps({"origin": self.server.name, "served": self.served}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.path.startswith("/close"):
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        if self.path.startswith("/drop"):
            self.close_connection = True

    do_GET = do_POST = do_HEAD = _any


class CountingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Counting)
        self.name = name
        self.lock = threading.Lock()
        self.accepted = 0  # connections that carried a request so far
        self.open = 0  # of those, open now

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@pytest.fixture
def origins() -> Iterator[Callable[[str], CountingServer]]:
    made: list[CountingServer] = []

    def make(name: str) -> CountingServer:
        server = CountingServer(name)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        made.append(server)
        return server

    yield make
    for server in made:
        server.shutdown()
        server.server_close()


@pytest.fixture
def expose(
    machine: Callable[[str], Machine], api: httpx.Client
) -> Callable[[CountingServer], dict[str, Any]]:
    """A public HTTP tunnel to an origin, served by its own `portway expose`, once active."""

    def make(origin: CountingServer) -> dict[str, Any]:
        name = f"ka{os.urandom(3).hex()}"
        machine(name).start(
            "expose", f"127.0.0.1:{origin.server_address[1]}", "--name", name,
            "--protocol", "http", "--public",
        ).wait_for("Connected to the hub.")  # fmt: skip

        def active() -> dict[str, Any] | None:
            found: dict[str, Any] = api.get(f"/v1/tunnels/{name}").json()
            return found if found["status"] == "active" else None

        found = wait_until(active, timeout=20, what=f"{name} to become active")
        assert found is not None
        return found

    return make


def host_of(tunnel: dict[str, Any]) -> str:
    return str(urlsplit(tunnel["publicUrl"]).netloc)


def test_sequential_requests_on_one_client_connection_use_one_upstream_connection(
    hub: HubProcess, origins: Callable[[str], CountingServer], expose: Any
) -> None:
    origin = origins("a")
    tunnel = expose(origin)
    with edge_client(hub) as client:
        for i in range(20):
            method = "POST" if i % 2 else "GET"
            answer = client.request(
                method, f"/n/{i}", headers={"Host": host_of(tunnel)}, content=b"x" * i
            )
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"origin": "a", "served": i + 1}
        assert client.head("/h", headers={"Host": host_of(tunnel)}).status_code == 200
        assert client.get("/g", headers={"Host": host_of(tunnel)}).json()["served"] == 22
    assert origin.accepted == 1
    # The client left: the idle upstream connection is closed too.
    wait_until(lambda: origin.open == 0 or None, timeout=10, what="the upstream to close")


def test_targets_that_close_keep_alive_connections_never_cost_a_502(
    hub: HubProcess, api: httpx.Client, origins: Callable[[str], CountingServer], expose: Any
) -> None:
    origin = origins("b")
    tunnel = expose(origin)

    def channels_all_closed() -> bool:
        """The tunnel's counters (flushed every few seconds) show every channel it opened (one
        per origin connection) and none of them open, while the client connection is."""
        stats = api.get(f"/v1/tunnels/{tunnel['id']}").json()["stats"]
        return bool(stats["totalConnections"] == origin.accepted and not stats["activeConnections"])

    with edge_client(hub) as client:
        headers = {"Host": host_of(tunnel)}
        for path in ("/close", "/drop", "/flaky", "/close", "/flaky", "/drop"):
            for _ in range(5):
                answer = client.get(path, headers=headers)
                assert answer.status_code == 200, (path, answer.text)
                assert answer.json()["origin"] == "b"
        # A target idle-closing between requests: the idle channel sees the EOF and goes.
        for _ in range(3):
            assert client.get("/drop", headers=headers).status_code == 200
            wait_until(channels_all_closed, timeout=10, what="the idle channel to close")
        # A non-idempotent request is not resent: a stale channel is its 502 (as with nginx).
        assert client.get("/g", headers=headers).status_code == 200
        posted = client.post("/flaky", headers=headers, content=b"body")
        assert posted.status_code == 502
        assert client.get("/g", headers=headers).status_code == 200


def test_host_switching_on_one_connection_reaches_each_tunnels_own_target(
    hub: HubProcess, origins: Callable[[str], CountingServer], expose: Any
) -> None:
    first, second = origins("first"), origins("second")
    one, two = expose(first), expose(second)
    with socket.create_connection(("127.0.0.1", edge_port(hub)), timeout=10) as sock:
        reader = sock.makefile("rb")
        for i in range(6):
            tunnel, name = (one, "first") if i % 3 else (two, "second")
            sock.sendall(f"GET /x HTTP/1.1\r\nHost: {host_of(tunnel)}\r\n\r\n".encode())
            status = reader.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert json.loads(reader.read(length))["origin"] == name


def test_revoking_a_share_closes_its_idle_upstream_and_the_next_request_is_410(
    hub: HubProcess, api: httpx.Client, origins: Callable[[str], CountingServer], expose: Any
) -> None:
    origin = origins("c")
    tunnel = expose(origin)
    created = share(api, tunnel)
    base = urlsplit(created["shareUrl"]).path
    with edge_client(hub) as client:
        assert client.get(f"{base}one").json() == {"origin": "c", "served": 1}
        assert client.get(f"{base}two").json() == {"origin": "c", "served": 2}
        assert origin.open == 1
        assert api.delete(f"/v1/shares/{created['id']}").status_code == 204
        started = time.monotonic()
        wait_until(lambda: origin.open == 0 or None, timeout=10, what="the idle upstream to close")
        assert time.monotonic() - started < 3
        gone = client.get(f"{base}three", headers={"Accept": "application/json"})
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "share_revoked"
    assert origin.accepted == 1


def test_pausing_a_tunnel_closes_its_idle_upstream_and_counts_one_connection(
    hub: HubProcess, api: httpx.Client, origins: Callable[[str], CountingServer], expose: Any
) -> None:
    origin = origins("d")
    tunnel = expose(origin)
    with edge_client(hub) as client:
        headers = {"Host": host_of(tunnel), "Accept": "application/json"}
        for _ in range(5):
            assert client.get("/p", headers=headers).status_code == 200
        assert origin.open == 1
        assert api.patch(f"/v1/tunnels/{tunnel['id']}", json={"status": "paused"}).is_success
        wait_until(lambda: origin.open == 0 or None, timeout=3, what="the idle upstream to close")
        paused = client.get("/p", headers=headers)
        assert paused.status_code == 503 and paused.json()["error"]["code"] == "tunnel_paused"
    assert origin.accepted == 1

    # Five requests over one channel: the tunnel's counters count one connection.
    def flushed() -> dict[str, Any] | None:
        stats: dict[str, Any] = api.get(f"/v1/tunnels/{tunnel['id']}").json()["stats"]
        return stats if stats["totalConnections"] and not stats["activeConnections"] else None

    stats = wait_until(flushed, timeout=15, what="the counters")
    assert stats is not None and stats["totalConnections"] == 1
