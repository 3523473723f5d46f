"""PostgreSQL with ssl=on: the probe's SSLRequest gets 'S' and the TLS handshake happens on that
same connection, the way libpq does it, so the certificate is reported and no connection ever
starts with a ClientHello. Uses its own throwaway cluster, since it changes the server's config."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
import trustme

from portway.probe import Detection, detect
from portway.testing.postgres import PostgresCluster, find_pg_bin, throwaway_cluster
from portway.testing.programs import unavailable
from portway.testing.waiting import async_wait_until
from tests.probe.fakes import RecordingRelay, opener

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
async def tls_cluster() -> AsyncIterator[tuple[PostgresCluster, trustme.CA]]:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        unavailable("PostgreSQL server (initdb) is not installed (apt-get install postgresql)")
    assert bin_dir is not None
    ca = trustme.CA()
    cert = ca.issue_cert(
        "localhost", common_name="localhost", not_after=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    with throwaway_cluster(bin_dir) as cluster:
        owner = cluster.data_dir.stat()
        files = {"server.crt": cert.cert_chain_pems[0], "server.key": cert.private_key_pem}
        for name, blob in files.items():
            path = cluster.data_dir / name
            blob.write_to_path(str(path))
            os.chown(path, owner.st_uid, owner.st_gid)  # the server's user must own its key,
            path.chmod(0o600)  # and PostgreSQL refuses a key others can read
        conn = await asyncpg.connect(cluster.url(driver="postgresql"), ssl=False)
        try:
            await conn.execute("ALTER SYSTEM SET ssl = on")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()

        async def ssl_on() -> bool:
            check = await asyncpg.connect(cluster.url(driver="postgresql"), ssl=False)
            try:
                return bool(await check.fetchval("SHOW ssl") == "on")
            finally:
                await check.close()

        await async_wait_until(ssl_on, timeout=20, what="ssl = on after reload")
        yield cluster, ca


async def test_postgres_tls_certificate_read_in_place(
    tls_cluster: tuple[PostgresCluster, trustme.CA],
) -> None:
    cluster, _ = tls_cluster
    async with RecordingRelay(cluster.port) as relay:
        found = await detect(opener(relay.port), hint="postgres", server_name="localhost")
    assert found.protocol == "postgres"
    assert found.tls is not None
    assert found.tls.subject.startswith("CN=localhost,")
    assert found.tls.not_after == "2030-01-02T03:04:05Z"
    assert found == Detection(
        "postgres", tls=found.tls, detail=f"PostgreSQL, accepts TLS ({found.tls.version})"
    )
    # One connection after the greeting wait; it began with SSLRequest, never with a ClientHello.
    assert relay.received[1:] == [bytes.fromhex("0000000804d2162f")]
