"""A plain database never receives a TLS ClientHello: a relay in front of real servers records
the first bytes of every connection detect() opens (a ClientHello starts with 0x16)."""

from __future__ import annotations

import pytest

from portway.probe import detect, hint_from
from portway.testing.postgres import PostgresCluster
from portway.testing.programs import require_program, unavailable
from portway.testing.redis import throwaway_redis
from portway.testing.tls_origin import TlsOrigin
from tests.probe.fakes import FakeServer, RecordingRelay, opener

HANDSHAKE = 0x16


def client_hellos(received: list[bytes]) -> list[bytes]:
    return [first for first in received if first[:1] == bytes([HANDSHAKE])]


@pytest.mark.parametrize("hint", [None, "redis", hint_from("https", 6379)])
async def test_redis_never_gets_a_client_hello(hint: str | None) -> None:
    server = require_program("redis-server")
    with throwaway_redis(server) as port:
        async with RecordingRelay(port) as relay:
            found = await detect(opener(relay.port), hint=hint, timeout=0.5)
    assert found.protocol == "redis"
    assert len(relay.received) >= 2  # the greeting wait, then at least the Redis probe
    assert client_hellos(relay.received) == []


@pytest.mark.postgres
@pytest.mark.parametrize("hint", [None, "postgres", hint_from("https", 5432)])
async def test_postgres_without_ssl_never_gets_a_client_hello(
    postgres_cluster: PostgresCluster | None, hint: str | None
) -> None:
    if postgres_cluster is None:
        unavailable("PostgreSQL server (initdb) is not installed (apt-get install postgresql)")
    assert postgres_cluster is not None
    async with RecordingRelay(postgres_cluster.port) as relay:
        found = await detect(opener(relay.port), hint=hint, timeout=0.5)
    assert found.protocol == "postgres" and found.tls is None
    assert relay.received[1:] == [bytes.fromhex("0000000804d2162f")]  # one SSLRequest, 'N'
    assert client_hellos(relay.received) == []


async def test_a_silent_target_never_gets_a_client_hello() -> None:
    async with FakeServer() as silent:
        await detect(opener(silent.port), timeout=0.2)
    assert len(silent.received) == 5
    assert client_hellos(silent.received) == []


async def test_the_recorder_does_see_a_client_hello_once_tls_showed() -> None:
    # The contrast that makes the tests above meaningful: a server that answers plaintext the way
    # nginx does on its TLS port earns a ClientHello, and the relay records it.
    with TlsOrigin(on_plaintext="nginx") as origin:
        async with RecordingRelay(origin.port) as relay:
            found = await detect(opener(relay.port), hint="http", timeout=1)
    assert found.protocol == "https"
    assert relay.received[1].startswith(b"HEAD / HTTP/1.1\r\n")  # hinted probe first, in plain
    assert len(client_hellos(relay.received)) == 1
    assert relay.received[-1][:1] == bytes([HANDSHAKE])
