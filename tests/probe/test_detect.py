"""detect() against real servers (PostgreSQL, Redis, MariaDB, HTTP, HTTPS) and mongod's stand-in,
plus the targets that must not fool or hang it: closed, silent, TLS-only, banner-first."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from cryptography import x509

from portway.agent.dialer import DialError
from portway.probe import Detection, detect
from portway.probe.mongo import msg_document, op_msg, split_message
from portway.testing.http_origin import HttpOrigin
from portway.testing.mariadb import MariaDbServer, find_mariadb_bin, throwaway_mariadb
from portway.testing.mongo_origin import MongoOrigin
from portway.testing.origins import EchoOrigin
from portway.testing.ports import free_port
from portway.testing.postgres import PostgresCluster
from portway.testing.programs import require_program, unavailable
from portway.testing.redis import throwaway_redis
from portway.testing.tls_origin import Plaintext, TlsOrigin
from portway.wire.codes import Reason
from tests.probe.fakes import BannerServer, FakeServer, mariadb_greeting, opener


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDbServer]:
    binaries = find_mariadb_bin()
    if binaries is None:
        unavailable("mariadbd is not installed (apt-get install mariadb-server)")
    assert binaries is not None
    with throwaway_mariadb(binaries) as server:
        yield server


@pytest.fixture
def postgres(postgres_cluster: PostgresCluster | None) -> PostgresCluster:
    if postgres_cluster is None:
        unavailable("PostgreSQL server (initdb) is not installed (apt-get install postgresql)")
    assert postgres_cluster is not None
    return postgres_cluster


# --- real servers -------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_postgres_without_tls(postgres: PostgresCluster) -> None:
    found = await detect(opener(postgres.port), hint="postgres", timeout=2)
    assert found == Detection("postgres", detail="PostgreSQL, no TLS")


@pytest.mark.postgres
async def test_postgres_found_without_a_hint(postgres: PostgresCluster) -> None:
    found = await detect(opener(postgres.port), timeout=2)
    assert found.protocol == "postgres"


async def test_redis() -> None:
    server = require_program("redis-server")
    with throwaway_redis(server) as port:
        found = await detect(opener(port), hint="redis", timeout=2)
    assert found.protocol == "redis" and not found.auth_required
    assert found.version is not None and found.version[0].isdigit()
    assert found.detail == f"Redis {found.version}"


async def test_redis_with_a_password_and_no_hint() -> None:
    server = require_program("redis-server")
    with throwaway_redis(server, password="s3cret") as port:
        # No hint: the PostgreSQL probe goes first and Redis waits for the rest of its line.
        found = await detect(opener(port), timeout=0.5)
    assert found == Detection("redis", auth_required=True, detail="Redis, password required")


@pytest.mark.slow
async def test_mariadb_greeting_and_the_client_works(mariadb: MariaDbServer) -> None:
    started = time.monotonic()
    found = await detect(opener(mariadb.port), timeout=2)
    assert time.monotonic() - started < 2  # the greeting alone decides, no probe is sent
    assert found.protocol == "mysql"
    assert found.version is not None and "MariaDB" in found.version
    assert not found.version.startswith("5.5.5-")
    assert found.detail.startswith("MariaDB " + found.version.split("-")[0])
    client = require_program("mariadb", package="mariadb-client")
    out = subprocess.run(
        [client, "-h", mariadb.host, "-P", str(mariadb.port), "-u", mariadb.user, "-N", "-e",
         "SELECT VERSION()"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == found.version


async def test_mongodb_responder() -> None:
    async with MongoOrigin(max_wire_version=21) as origin:
        found = await detect(opener(origin.port), hint="mongodb", timeout=2)
        assert origin.commands == ["hello"]
    assert found == Detection(
        "mongodb", version="wire 21", detail="MongoDB, wire 21, writable primary"
    )


async def test_mongodb_secondary_found_without_a_hint() -> None:
    async with MongoOrigin(max_wire_version=17, writable=False) as origin:
        found = await detect(opener(origin.port), timeout=0.5)
    assert found == Detection("mongodb", version="wire 17", detail="MongoDB, wire 17, secondary")


async def test_http_server_header_is_the_version() -> None:
    with HttpOrigin() as origin:
        found = await detect(opener(origin.port), hint="http", timeout=2)
    assert found.protocol == "http" and found.tls is None
    assert found.version is not None and found.version.startswith("BaseHTTP/")
    assert found.detail == f"HTTP 200, {found.version}"


async def test_https_certificate_details() -> None:
    expiry = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    with TlsOrigin(not_after=expiry) as origin:
        found = await detect(opener(origin.port), hint="https", server_name="localhost", timeout=2)
    ca = x509.load_pem_x509_certificate(origin.ca.cert_pem.bytes())
    assert found.protocol == "https"
    assert found.version is not None and found.version.startswith("BaseHTTP/")
    assert found.tls is not None
    assert found.tls.subject.startswith("CN=localhost,")
    assert found.tls.issuer == ca.subject.rfc4514_string()
    assert found.tls.not_after == "2031-05-06T07:08:09Z"
    assert found.tls.version in ("TLSv1.2", "TLSv1.3")


# --- targets that must not fool or hang detect() ------------------------------------------------


async def test_closed_port_raises_the_openers_error_fast() -> None:
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        await detect(opener(free_port()), timeout=2)
    assert time.monotonic() - started < 1


async def test_dial_errors_propagate() -> None:
    async def denied() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        raise DialError(Reason.DENIED, "target 169.254.169.254:80 denied by agent policy")

    with pytest.raises(DialError, match="denied by agent policy"):
        await detect(denied)


async def test_connecting_is_bounded_by_the_timeout() -> None:
    async def blackhole() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"longer than 0\.2s"):
        await detect(blackhole, timeout=0.2)
    assert time.monotonic() - started < 1


async def test_silent_server_is_tcp_within_the_timeouts() -> None:
    async with FakeServer() as silent:
        started = time.monotonic()
        found = await detect(opener(silent.port), timeout=0.3)
        elapsed = time.monotonic() - started
    # The greeting wait, then four probes that each get no answer in time.
    assert elapsed < 0.3 + 4 * 0.3 + 1
    assert found == Detection("tcp", detail="no known protocol answered")
    assert len(silent.received) == 5  # greeting connection + four probes, no ClientHello


async def test_banner_that_is_not_mysql_is_tcp() -> None:
    async with BannerServer(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n") as ssh:
        found = await detect(opener(ssh.port), hint="postgres", timeout=2)
        assert ssh.received == [b""]  # decided on the banner: nothing was sent to it
    assert found == Detection("tcp", detail="SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3")


@pytest.mark.parametrize("on_plaintext", ["nginx", "alert"])
async def test_tls_where_postgres_was_expected(on_plaintext: Plaintext) -> None:
    with TlsOrigin(on_plaintext=on_plaintext) as origin:
        found = await detect(opener(origin.port), hint="postgres", timeout=2)
    assert found.protocol == "https"
    assert found.tls is not None and found.tls.subject.startswith("CN=localhost")


async def test_tls_server_that_hangs_up_on_plaintext_is_not_guessed() -> None:
    # An OpenSSL server closes on plaintext without a word: no sign of TLS, so no ClientHello;
    # the answer is an honest tcp, quickly.
    with TlsOrigin(on_plaintext="close") as origin:
        started = time.monotonic()
        found = await detect(opener(origin.port), hint="postgres", timeout=2)
    assert time.monotonic() - started < 2
    assert found == Detection("tcp", detail="no known protocol answered")


async def test_a_slow_greeting_is_awaited_when_the_hint_is_mysql() -> None:
    greeting = mariadb_greeting(b"11.4.2-MariaDB")
    async with BannerServer(greeting, delay=0.6) as slow:
        found = await detect(opener(slow.port), hint="mysql", timeout=2)
    assert found == Detection(
        "mysql", version="11.4.2-MariaDB", detail="MariaDB 11.4.2, accepts TLS"
    )


async def test_https_hint_on_a_plain_http_server_falls_back_to_http() -> None:
    with HttpOrigin() as origin:
        found = await detect(opener(origin.port), hint="https", timeout=1)
    assert found.protocol == "http" and found.tls is None


async def test_an_echo_server_is_not_mistaken_for_anything() -> None:
    # Every probe gets its own bytes back: none of them may read that as its protocol's answer.
    with EchoOrigin() as origin:
        found = await detect(opener(origin.port), timeout=1)
    assert found == Detection("tcp", detail="no known protocol answered")


async def test_mongo_responder_answers_legacy_and_unknown_commands() -> None:
    async with MongoOrigin() as origin:
        reader, writer = await asyncio.open_connection("127.0.0.1", origin.port)
        try:
            replies = []
            commands = ({"isMaster": 1, "$db": "admin"}, {"ping": 1, "$db": "admin"})
            for request_id, command in enumerate(commands, start=1):
                writer.write(op_msg(command, request_id))
                header = await reader.readexactly(16)
                rest = await reader.readexactly(int.from_bytes(header[:4], "little") - 16)
                message = split_message(header + rest)
                assert message is not None and message[1] == request_id
                replies.append(msg_document(message[3]))
        finally:
            writer.close()
            await writer.wait_closed()
    legacy, unknown = replies
    assert legacy["ismaster"] is True and legacy["maxWireVersion"] == 21 and legacy["ok"] == 1.0
    assert unknown == {"ok": 0.0, "errmsg": "no such command: 'ping'", "code": 59,
                       "codeName": "CommandNotFound"}  # fmt: skip
