"""The HTTP edge with real processes: a public URL and share links through a real hub and agent,
fetched with curl, httpx and a raw WebSocket client, with every share policy enforced."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from portway.testing.http_origin import HttpsOrigin, encode_frame, read_frame
from portway.testing.hub import HubProcess
from portway.testing.machines import Machine
from portway.testing.programs import require_program
from portway.testing.waiting import wait_until

pytestmark = pytest.mark.e2e


def edge_port(hub: HubProcess) -> int:
    return int(hub.flags["edge_listen"].rsplit(":", 1)[1])


def share(api: httpx.Client, tunnel: dict[str, Any], **policy: Any) -> dict[str, Any]:
    response = api.post(f"/v1/tunnels/{tunnel['id']}/shares", json={"name": "guest", **policy})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def edge_client(hub: HubProcess) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{edge_port(hub)}", timeout=30)


def test_public_url_with_curl_keeps_query_and_adds_forwarding_headers(
    hub: HubProcess, web: dict[str, Any], tmp_path: Path
) -> None:
    curl = require_program("curl")
    url = urlsplit(web["publicUrl"])
    assert url.port == edge_port(hub)
    out = subprocess.run(
        [curl, "-sf", "--max-time", "10", "--resolve", f"{url.hostname}:{url.port}:127.0.0.1",
         f"{web['publicUrl']}/echo/x?a=1&b=%20two", "-H", "Connection: keep-alive, X-Drop",
         "-H", "X-Drop: secret"],
        capture_output=True, check=True,
    )  # fmt: skip
    seen = httpx.Response(200, content=out.stdout).json()
    assert seen["target"] == "/echo/x?a=1&b=%20two"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == f"{url.hostname}:{url.port}"
    assert headers["forwarded"].startswith("for=127.0.0.1;")
    assert "x-drop" not in headers
    # Expect: 100-continue: curl waits for the origin's 100 (relayed by the edge) before the body.
    body = tmp_path / "body.bin"
    body.write_bytes(os.urandom(2 * 1024 * 1024))
    posted = subprocess.run(
        [curl, "-sf", "--max-time", "20", "--expect100-timeout", "15", "--resolve",
         f"{url.hostname}:{url.port}:127.0.0.1", "-H", "Expect: 100-continue",
         "--data-binary", f"@{body}", "-w", "\n%{time_total}", f"{web['publicUrl']}/up"],
        capture_output=True, check=True, text=True,
    )  # fmt: skip
    answer, elapsed = posted.stdout.rsplit("\n", 1)
    assert httpx.Response(200, content=answer).json()["size"] == 2 * 1024 * 1024
    assert float(elapsed) < 10  # not the 15 s curl waits when no 100 comes


def test_unknown_host_404_by_accept(hub: HubProcess) -> None:
    with edge_client(hub) as client:
        page = client.get("/", headers={"Host": "nope.localhost"})
        assert page.status_code == 404 and "text/html" in page.headers["content-type"]
        data = client.get("/", headers={"Host": "nope.localhost", "Accept": "application/json"})
        assert data.status_code == 404 and data.json()["error"]["code"] == "not_found"


def test_keep_alive_bodies_chunked_and_binary_exact(hub: HubProcess, web: dict[str, Any]) -> None:
    host = urlsplit(web["publicUrl"]).netloc
    blob = os.urandom(3 * 1024 * 1024 + 7)
    with edge_client(hub) as client:
        for _ in range(3):  # one kept-alive connection, several requests
            seen = client.post("/up", content=blob, headers={"Host": host}).json()
            assert seen["size"] == len(blob)
        streamed = client.post("/up", content=iter([blob[:1000], blob[1000:]]),
                               headers={"Host": host, "Expect": "100-continue"})  # fmt: skip
        assert streamed.json()["size"] == len(blob)
        down = client.get("/download/5000000?chunked=1", headers={"Host": host})
        assert len(down.content) == 5_000_000


def test_share_policy_denials_rate_limit_and_access_logs(
    hub: HubProcess, api: httpx.Client, web: dict[str, Any]
) -> None:
    created = share(api, web, allowedMethods=["GET"], allowedPaths=["/api"], rateLimit=8)
    base = urlsplit(created["shareUrl"]).path.rstrip("/")  # /s/<token>
    with edge_client(hub) as client:
        redirect = client.get(base)
        assert redirect.status_code == 308 and redirect.headers["location"] == base + "/"
        ok = client.get(base + "/api/items?x=1")
        assert ok.status_code == 200 and ok.json()["target"] == "/api/items?x=1"
        assert ok.headers["x-ratelimit-limit"] == "8"
        assert ok.headers["x-ratelimit-remaining"] == "7"
        denied = client.post(base + "/api/items")
        assert denied.status_code == 405 and denied.headers["allow"] == "GET"
    curl = require_program("curl")
    port = edge_port(hub)
    for spelling in ("/api-admin", "/api/../admin", "/api/%2e%2e/admin", "/api/%2E%2E/admin"):
        out = subprocess.run(
            [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--path-as-is",
             f"http://127.0.0.1:{port}{base}{spelling}"],
            capture_output=True, check=True, text=True,
        )  # fmt: skip
        assert out.stdout == "403", spelling
    with edge_client(hub) as client:
        # 8 per minute: 1 + 1 (405) + 4 (403) counted so far; 2 more pass, then 429.
        assert [client.get(base + "/api").status_code for _ in range(3)] == [200, 200, 429]
        refused = client.get(base + "/api")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.headers["x-ratelimit-remaining"] == "0"

    def logged() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = api.get(
            f"/v1/shares/{created['id']}/access-logs", params={"limit": 100}
        ).json()["items"]
        return items if len(items) >= 11 else None

    items = wait_until(logged, timeout=10, what="access logs")
    assert items is not None
    statuses = sorted(item["statusCode"] for item in items)
    assert statuses.count(403) == 4 and statuses.count(405) == 1 and statuses.count(429) == 2
    assert any(item["allowed"] for item in items)
    served = [item for item in items if item["allowed"]]
    assert all(item["bytesOut"] > 0 and item["latencyMs"] >= 0 for item in served)
    assert all(item["bytesOut"] is None for item in items if item["statusCode"] == 403)
    assert "/api/items?x=1" in [item["path"] for item in items]
    assert not any("pws_" in (item["path"] or "") for item in items)  # the token is never logged
    assert api.get(f"/v1/shares/{created['id']}").json()["accessCount"] >= 3


def test_revocation_applies_to_the_next_request_on_a_live_connection(
    hub: HubProcess, api: httpx.Client, web: dict[str, Any]
) -> None:
    created = share(api, web)
    base = urlsplit(created["shareUrl"]).path
    with edge_client(hub) as client:
        assert client.get(base + "x").status_code == 200
        assert api.delete(f"/v1/shares/{created['id']}").status_code == 204
        assert client.get(base + "x").status_code == 410
    with edge_client(hub) as client:
        assert client.get("/s/pws_unknown/").status_code == 404


def websocket_echo(port: int, host: str, path: str) -> list[bytes]:
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        reader = sock.makefile("rb")
        status = reader.readline()
        assert b" 101 " in status, status
        while reader.readline() not in (b"\r\n", b""):
            pass
        out = []
        for payload in (b"hello", os.urandom(70000)):
            sock.sendall(encode_frame(2, payload, mask=True))
            frame = read_frame(reader.read)
            assert frame is not None
            out.append(frame[1])
            assert frame[1] == payload
        sock.sendall(encode_frame(8, b"", mask=True))
        assert read_frame(reader.read) == (8, b"")
        return out


def test_websocket_echo_through_public_url_and_share(
    hub: HubProcess, api: httpx.Client, web: dict[str, Any]
) -> None:
    host = urlsplit(web["publicUrl"]).netloc
    assert websocket_echo(edge_port(hub), host, "/ws")[0] == b"hello"
    base = urlsplit(share(api, web)["shareUrl"]).path
    assert websocket_echo(edge_port(hub), "127.0.0.1", base + "ws")[0] == b"hello"


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


BIG = int(os.environ.get("PORTWAY_EDGE_BIG_MB", "1024")) * 1024 * 1024


def test_large_streamed_upload_and_download_with_bounded_hub_memory(
    hub: HubProcess, web: dict[str, Any]
) -> None:
    assert hub.proc is not None
    host = urlsplit(web["publicUrl"]).netloc
    before = memory_kib(hub.proc.pid, "VmRSS")
    piece = os.urandom(1024 * 1024)

    def body() -> Iterator[bytes]:
        for _ in range(BIG // len(piece)):
            yield piece

    with edge_client(hub) as client:
        seen = client.post("/upload", content=body(), headers={"Host": host}).json()
        assert seen["size"] == BIG
        received = 0
        with client.stream("GET", f"/download/{BIG}", headers={"Host": host}) as down:
            for data in down.iter_bytes():
                received += len(data)
        assert received == BIG
    growth = memory_kib(hub.proc.pid, "VmHWM") - before
    assert growth < 64 * 1024, f"hub peak RSS grew by {growth} KiB"


def test_https_target_verified_unless_metadata_says_otherwise(
    machine: Callable[[str], Machine], hub: HubProcess, api: httpx.Client, tmp_path: Path
) -> None:
    with HttpsOrigin(tmp_path / "origin-tls") as origin:
        server = machine("server")
        server.start(
            "expose", f"localhost:{origin.port}", "--name", "secure", "--protocol", "https",
            "--public",
        ).wait_for("Connected to the hub.")  # fmt: skip
        wait_until(
            lambda: api.get("/v1/tunnels/secure").json().get("status") == "active",
            timeout=20, what="secure to become active",
        )  # fmt: skip
        host = urlsplit(api.get("/v1/tunnels/secure").json()["publicUrl"]).netloc
        with edge_client(hub) as client:
            # The origin's CA is not trusted: the agent's TLS handshake fails, the edge says 502.
            assert client.get("/x", headers={"Host": host}).status_code == 502
            patched = api.patch("/v1/tunnels/secure", json={"metadata": {"tlsVerify": False}})
            assert patched.status_code == 200, patched.text

            def fetched() -> dict[str, Any] | None:
                answer = client.get("/x?y=1", headers={"Host": host})
                return answer.json() if answer.status_code == 200 else None

            seen = wait_until(fetched, timeout=10, what="the https target through the edge")
            assert seen is not None and seen["target"] == "/x?y=1"


def test_paused_503_and_agent_away_502(
    hub: HubProcess, api: httpx.Client, web: dict[str, Any]
) -> None:
    host = urlsplit(web["publicUrl"]).netloc
    json_accept = {"Accept": "application/json"}
    with edge_client(hub) as client:
        assert api.patch(f"/v1/tunnels/{web['id']}", json={"status": "paused"}).is_success

        def paused() -> httpx.Response | None:
            answer = client.get("/", headers={"Host": host, **json_accept})
            return answer if answer.status_code == 503 else None

        answer = wait_until(paused, timeout=10, what="the paused tunnel to answer 503")
        assert answer is not None and answer.json()["error"]["code"] == "tunnel_paused"
        agent = api.post("/v1/agents", json={"name": f"away{os.urandom(3).hex()}"}).json()
        away = api.post(
            "/v1/tunnels",
            json={"target": "localhost:9", "agentId": agent["id"], "protocol": "http",
                  "public": True},
        ).json()  # fmt: skip
        away_host = urlsplit(away["publicUrl"]).netloc

        def unavailable() -> httpx.Response | None:
            answer = client.get("/", headers={"Host": away_host})
            return answer if answer.status_code == 502 else None

        answer = wait_until(unavailable, timeout=10, what="the agent-less tunnel to answer 502")
        assert answer is not None and "text/html" in answer.headers["content-type"]


def test_a_request_that_asks_to_close_gets_its_whole_answer_first(
    web: dict[str, Any], hub: HubProcess
) -> None:
    host = urlsplit(web["publicUrl"]).netloc
    with socket.create_connection(("127.0.0.1", edge_port(hub)), timeout=10) as sock:
        sock.sendall(f"GET /close HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b"connection: close" in head.lower()
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    assert len(body) == length
