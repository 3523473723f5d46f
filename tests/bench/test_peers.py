"""The benchmark's C baselines (`bench.peers`): stunnel, nginx and nginx with TLS, each started
against real origins on loopback (the benchmark's HTTP origin and a throwaway redis-server) and
driven with real clients: curl, a raw HTTP request, redis-cli."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.paths import Endpoints
from bench.procs import port_open, wait_for
from bench.scenarios.idle import origin_open_connections
from bench.servers import Origins
from bench.tools import Endpoint

from bench import peers
from portway.testing.ports import free_port
from portway.testing.programs import require_program
from portway.testing.redis import throwaway_redis
from tests.bench.test_bench_smoke import ROOT, pythonpath

pytestmark = [pytest.mark.e2e]

ANSWER = b"HTTP/1.1 200 OK"
BODY = "Hello, world\n"


@pytest.fixture
def origins() -> Iterator[Origins]:
    """The HTTP origin (also standing in for iperf3's port) and a throwaway redis-server."""
    redis_server = require_program("redis-server")
    port = free_port()
    origin = subprocess.Popen(
        [sys.executable, "-m", "bench.origin", str(port)], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": pythonpath()},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: origin.poll() is not None or port_open(port), timeout=15, what="origin")
        assert origin.poll() is None, "the HTTP origin exited"
        with throwaway_redis(redis_server) as redis_port:
            yield Origins(iperf_port=port, http_port=port, redis_port=redis_port)
    finally:
        origin.terminate()
        origin.wait(timeout=10)


def require_nginx() -> None:
    if not Path("/usr/sbin/nginx").exists():
        require_program("nginx", package="nginx-light")


def raw_get(endpoint: Endpoint) -> bytes:
    """One HTTP/1.1 GET with ``Connection: close`` over a plain socket; the whole answer."""
    with socket.create_connection((endpoint.host, endpoint.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    return answer


def curl(url: str) -> str:
    done = subprocess.run(["curl", "-sSk", "--max-time", "10", url],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def ports_of(endpoints: Endpoints) -> list[int]:
    found = [endpoints.iperf_tcp, endpoints.http, endpoints.redis, endpoints.postgres]
    return [endpoint.port for endpoint in found if endpoint]


@pytest.mark.timeout(60)
def test_stunnel_carries_http_and_redis_over_tls(origins: Origins, tmp_path: Path) -> None:
    require_program("stunnel4", package="stunnel4")
    redis_cli = require_program("redis-cli", package="redis-tools")
    with peers.stunnel(origins, tmp_path) as endpoints:
        assert endpoints.http and endpoints.iperf_tcp and endpoints.redis
        assert endpoints.postgres is None  # no PostgreSQL origin: no section for it
        client, server = endpoints.pids["stunnel_client"], endpoints.pids["stunnel_server"]
        assert len(client) == len(server) == 1 and client != server
        assert all(map(alive, (*client, *server)))
        for endpoint in (endpoints.http, endpoints.iperf_tcp):  # both lead to the HTTP origin
            answer = raw_get(endpoint)
            assert answer.startswith(ANSWER) and answer.endswith(BODY.encode()), answer
        ping = subprocess.run([redis_cli, "-p", str(endpoints.redis.port), "PING"],
                              capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
        assert ping.stdout.strip() == "PONG", ping
        listening = ports_of(endpoints)
    assert not any(map(port_open, listening))
    config = (tmp_path / "stunnel-client.conf").read_text()
    assert "sslVersionMin = TLSv1.3" in config and "setuid" not in config
    assert "LOG5[" not in (tmp_path / "stunnel-client.log").read_text()  # warnings and errors


@pytest.mark.timeout(60)
def test_nginx_proxies_http_with_a_keepalive_upstream(origins: Origins, tmp_path: Path) -> None:
    require_nginx()
    require_program("curl")
    with peers.nginx(origins, tmp_path) as endpoints:
        assert endpoints.http and not isinstance(endpoints.http, peers.TlsEndpoint)
        assert endpoints.iperf_tcp is endpoints.redis is None  # HTTP only
        master, *workers = endpoints.pids["nginx"]
        assert len(workers) == peers.NGINX_WORKERS
        assert peers.child_pids(master) == tuple(workers)
        assert curl(endpoints.http.url) == BODY
        answer = raw_get(endpoints.http)
        assert answer.startswith(ANSWER) and answer.endswith(BODY.encode()), answer
        # The client's connections are closed; nginx keeps its upstream ones for reuse.
        assert origin_open_connections(origins.http_port) >= 1
        port = endpoints.http.port
    assert not port_open(port)
    assert not alive(master)


@pytest.mark.timeout(60)
def test_nginx_tls_serves_https_with_tls13_only(origins: Origins, tmp_path: Path) -> None:
    require_nginx()
    require_program("curl")
    with peers.nginx_tls(origins, tmp_path) as endpoints:
        endpoint = endpoints.http
        assert isinstance(endpoint, peers.TlsEndpoint) and endpoint.tls
        assert endpoint.url == f"https://127.0.0.1:{endpoint.port}/"
        assert curl(endpoint.url) == BODY
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as raw,
            insecure.wrap_socket(raw) as tls,
        ):
            assert tls.version() == "TLSv1.3"
        insecure.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            pytest.raises(ssl.SSLError),
            socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as raw,
            insecure.wrap_socket(raw),
        ):
            pass
        port = endpoint.port
    assert not port_open(port)


@pytest.mark.timeout(60)
def test_self_signed_writes_a_certificate_and_a_private_key(tmp_path: Path) -> None:
    cert, key = peers.self_signed(tmp_path / "certs")
    assert cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert key.stat().st_mode & 0o077 == 0
    context = ssl.create_default_context(cafile=str(cert))
    context.load_cert_chain(cert, key)  # the two belong together
