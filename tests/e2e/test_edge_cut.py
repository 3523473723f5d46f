"""Live traffic through the edge is cut when its share or tunnel stops being usable: revoking or
expiring a share ends the downloads and WebSockets running through it within about a second
(the edge's sweep), pausing or deleting a tunnel ends its public-URL traffic (the data plane's
reset), and the access log records each cut exchange with what was sent before it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from portway.store import Database
from portway.store.models import Share
from portway.testing.http_origin import encode_frame, read_frame
from portway.testing.hub import HubProcess
from portway.testing.waiting import wait_until
from tests.e2e.test_edge import edge_port, share

pytestmark = pytest.mark.e2e

ENDLESS = 1 << 40  # a download that never ends on its own during a test
CUT_WITHIN = 1.5  # seconds: a 0.5 s sweep, one store query, and draining socket buffers


class Download:
    """A raw HTTP/1.1 GET of an endless download, read only as fast as the test asks."""

    def __init__(self, port: int, host: str, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = self.sock.recv(65536)
            assert data, buf
            buf += data
        self.head, _, rest = buf.partition(b"\r\n\r\n")
        assert self.head.startswith(b"HTTP/1.1 200"), self.head
        self.received = len(rest)

    def read(self, at_least: int) -> None:
        """Read `at_least` more body bytes (the download is flowing)."""
        goal = self.received + at_least
        while self.received < goal:
            data = self.sock.recv(1 << 20)
            assert data, "the download ended early"
            self.received += len(data)

    def until_cut(self, timeout: float = 10.0) -> float:
        """Seconds until the edge ends the connection. Reads at a bounded rate (a little every
        few milliseconds, so measuring does not load the machine); an uncut endless download
        keeps flowing, so the deadline fails the test."""
        started = time.monotonic()

        def ended() -> bool:
            for _ in range(4):
                try:
                    data = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    return False
                except ConnectionResetError:
                    return True
                if not data:
                    return True
                self.received += len(data)
            return False

        wait_until(ended, timeout=timeout, interval=0.01, what="the edge to cut the download")
        return time.monotonic() - started

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def downloads() -> Iterator[Callable[[int, str, str], Download]]:
    made: list[Download] = []

    def start(port: int, host: str, path: str) -> Download:
        made.append(Download(port, host, path))
        return made[-1]

    yield start
    for download in made:
        download.close()


def open_websocket(port: int, host: str, path: str) -> socket.socket:
    """A WebSocket through the edge, with one echo checked; the caller closes it."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += sock.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    sock.sendall(encode_frame(2, b"ping", mask=True))
    with sock.makefile("rb") as reader:
        assert read_frame(reader.read) == (2, b"ping")
    return sock


def until_closed(sock: socket.socket, timeout: float = 10.0) -> float:
    """Seconds until the edge closes an idle connection (EOF or reset)."""
    started = time.monotonic()
    sock.settimeout(timeout)
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(65536) == b""
    return time.monotonic() - started


def access_logs(api: httpx.Client, share_id: str, reason: str) -> list[dict[str, Any]]:
    def logged() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = api.get(
            f"/v1/shares/{share_id}/access-logs", params={"limit": 100}
        ).json()["items"]
        found = [item for item in items if item["reason"] == reason]
        return found or None

    found = wait_until(logged, timeout=10, what=f"an access log entry with reason {reason}")
    assert found is not None
    return found


def test_revoking_a_share_cuts_a_running_download_and_logs_it(
    hub: HubProcess, api: httpx.Client, web: dict[str, Any], downloads: Any
) -> None:
    created = share(api, web)
    base = urlsplit(created["shareUrl"]).path
    download = downloads(edge_port(hub), "127.0.0.1", f"{base}download/{ENDLESS}")
    download.read(4 << 20)
    other = share(api, web)  # a second share of the same tunnel is not affected
    untouched = downloads(
        edge_port(hub), "127.0.0.1", f"{urlsplit(other['shareUrl']).path}download/{ENDLESS}"
    )
    untouched.read(1 << 20)
    assert api.delete(f"/v1/shares/{created['id']}").status_code == 204
    assert download.until_cut() < CUT_WITHIN
    assert download.received < ENDLESS
    untouched.read(8 << 20)  # still flowing after the sweep that cut the revoked one
    [entry] = access_logs(api, created["id"], "cut_share_revoked")
    assert entry["statusCode"] == 200 and entry["allowed"] is True
    assert entry["path"] == f"/download/{ENDLESS}"
    assert download.received <= entry["bytesOut"] <= download.received + (16 << 20)
    # The next request is refused as before.
    with httpx.Client(base_url=f"http://127.0.0.1:{edge_port(hub)}") as client:
        assert client.get(f"{base}x").status_code == 410


def test_revoking_a_share_closes_an_open_websocket(
    hub: HubProcess, api: httpx.Client, web: dict[str, Any]
) -> None:
    created = share(api, web)
    base = urlsplit(created["shareUrl"]).path
    with open_websocket(edge_port(hub), "127.0.0.1", base + "ws") as sock:
        assert api.delete(f"/v1/shares/{created['id']}").status_code == 204
        assert until_closed(sock) < CUT_WITHIN
    [entry] = access_logs(api, created["id"], "cut_share_revoked")
    assert entry["statusCode"] == 101 and entry["path"] == "/ws"


def test_a_request_not_answered_yet_gets_the_410_when_its_share_is_revoked(
    hub: HubProcess, api: httpx.Client, web: dict[str, Any]
) -> None:
    created = share(api, web)
    base = urlsplit(created["shareUrl"]).path
    with socket.create_connection(("127.0.0.1", edge_port(hub)), timeout=10) as sock:
        # Half a body: the origin is still reading it, so no response has started.
        sock.sendall(
            f"POST {base}up HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n"
            "Accept: application/json\r\n\r\n".encode()
            + b"z" * 100
        )
        assert api.delete(f"/v1/shares/{created['id']}").status_code == 204
        started, answer = time.monotonic(), b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
        assert time.monotonic() - started < CUT_WITHIN
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 410 ") and b"connection: close" in head.lower(), answer
    assert b'"share_revoked"' in body
    [entry] = access_logs(api, created["id"], "cut_share_revoked")
    assert entry["statusCode"] == 410 and entry["bytesIn"] == 100


async def _expire_at(hub: HubProcess, share_id: str, when: datetime) -> None:
    """Move a share's expiry (the API offers presets of an hour and more) in the hub's store."""
    db = Database.open(f"sqlite+aiosqlite:///{Path(hub.flags['data_dir']) / 'portway.db'}")
    try:
        async with db.session() as session:
            found = await session.get(Share, uuid.UUID(share_id))
            assert found is not None
            found.expires_at = when
    finally:
        await db.close()


def test_a_share_expiring_mid_download_cuts_it(
    hub: HubProcess, api: httpx.Client, web: dict[str, Any], downloads: Any
) -> None:
    created = share(api, web, expiresIn="1h")
    base = urlsplit(created["shareUrl"]).path
    download = downloads(edge_port(hub), "127.0.0.1", f"{base}download/{ENDLESS}")
    download.read(1 << 20)
    expiry = datetime.now(UTC) + timedelta(seconds=1.5)
    asyncio.run(_expire_at(hub, created["id"], expiry))
    download.until_cut()
    cut_at = datetime.now(UTC)
    assert expiry <= cut_at < expiry + timedelta(seconds=CUT_WITHIN)
    access_logs(api, created["id"], "cut_share_expired")


def test_pausing_a_tunnel_cuts_its_public_url_and_share_downloads(
    hub: HubProcess, api: httpx.Client, web: dict[str, Any], downloads: Any
) -> None:
    host = urlsplit(web["publicUrl"]).netloc
    public = downloads(edge_port(hub), host, f"/download/{ENDLESS}")
    created = share(api, web)
    base = urlsplit(created["shareUrl"]).path
    shared = downloads(edge_port(hub), "127.0.0.1", f"{base}download/{ENDLESS}")
    public.read(1 << 20)
    shared.read(1 << 20)
    assert api.patch(f"/v1/tunnels/{web['id']}", json={"status": "paused"}).is_success
    assert public.until_cut() < CUT_WITHIN
    assert shared.until_cut() < CUT_WITHIN
    [entry] = access_logs(api, created["id"], "cut_tunnel_paused")
    assert entry["statusCode"] == 200


def test_deleting_a_tunnel_closes_a_websocket_on_its_public_url_and_its_shares(
    hub: HubProcess, api: httpx.Client, web: dict[str, Any]
) -> None:
    host = urlsplit(web["publicUrl"]).netloc
    base = urlsplit(share(api, web)["shareUrl"]).path
    with (
        open_websocket(edge_port(hub), host, "/ws") as public,
        open_websocket(edge_port(hub), "127.0.0.1", base + "ws") as shared,
    ):
        assert api.delete(f"/v1/tunnels/{web['id']}").status_code == 204
        assert until_closed(public) < CUT_WITHIN
        assert until_closed(shared) < CUT_WITHIN
