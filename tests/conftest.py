"""Fixtures shared by the whole suite: stores on SQLite and PostgreSQL, the API in-process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from portway.api.app import create_app
from portway.api.context import ApiContext
from portway.domain.clock import FrozenClock
from portway.hub import egress
from portway.hub.bootstrap import ensure_admin
from portway.hub.core.config import load_hub_config
from portway.hub.core.presence import AgentPresence
from portway.store import Database, migrate
from portway.testing.postgres import PostgresCluster, find_pg_bin, throwaway_cluster
from portway.testing.programs import unavailable

TEMPLATE_DB = "portway_template"


async def _migrate(url: str) -> None:
    db = Database.open(url)
    try:
        await migrate.upgrade(db)
    finally:
        await db.close()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster | None]:
    """A PostgreSQL server for the session: PORTWAY_TEST_POSTGRES_URL or a throwaway cluster."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        yield None
        return
    with throwaway_cluster(bin_dir) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_template(postgres_cluster: PostgresCluster | None) -> PostgresCluster | None:
    """Migrate a template database once; each test clones it (fast) instead of migrating."""
    if postgres_cluster is None:
        return None

    async def build() -> None:
        conn = await asyncpg.connect(postgres_cluster.url(driver="postgresql"))
        try:
            await conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        finally:
            await conn.close()
        await _migrate(postgres_cluster.url(TEMPLATE_DB))

    # Requested lazily from inside a running loop, so it runs on its own thread and loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, build()).result()
    return postgres_cluster


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@contextlib.asynccontextmanager
async def _postgres_database(cluster: PostgresCluster) -> AsyncIterator[str]:
    """A new database cloned from the migrated template, dropped afterwards."""
    name = "t_" + uuid.uuid4().hex[:16]
    admin = cluster.url(driver="postgresql")
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    finally:
        await conn.close()
    try:
        yield cluster.url(name)
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()


def _require_postgres(request: pytest.FixtureRequest) -> PostgresCluster:
    cluster: PostgresCluster | None = request.getfixturevalue("postgres_template")
    if cluster is None:
        unavailable("PostgreSQL server (initdb) is not installed (apt-get install postgresql)")
    assert cluster is not None
    return cluster


@pytest.fixture
async def postgres_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A freshly migrated, empty PostgreSQL database."""
    async with _postgres_database(_require_postgres(request)) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
) -> AsyncIterator[str]:
    """A freshly migrated, empty store: one SQLite file, or one PostgreSQL database."""
    if request.param == "sqlite":
        path = tmp_path / "portway.db"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    async with _postgres_database(_require_postgres(request)) as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database.open(database_url)
    yield database
    await database.close()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def presence() -> AgentPresence:
    return AgentPresence()


@pytest.fixture
async def ctx(
    db: Database, clock: FrozenClock, presence: AgentPresence, tmp_path: Path
) -> ApiContext:
    config = load_hub_config({"data_dir": str(tmp_path / "hub")}, {})
    guard = egress.Guard(config.webhooks_allow_private)
    return ApiContext(config=config, db=db, presence=presence, url_guard=guard, clock=clock)


@pytest.fixture
async def admin_key(ctx: ApiContext, tmp_path: Path) -> str:
    boot = await ensure_admin(ctx.db, tmp_path / "admin-api-key", ctx.clock)
    assert boot.admin_key is not None
    return boot.admin_key


@pytest.fixture
async def api(ctx: ApiContext, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process, authenticated as the admin workspace."""
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://hub.test",
        headers={"Authorization": f"Bearer {admin_key}"},
    ) as client:
        yield client


@pytest.fixture
async def other(api: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A client for a second, non-admin workspace on the same hub."""
    created = await api.post("/v1/workspaces", json={"name": "other-" + uuid.uuid4().hex[:6]})
    assert created.status_code == 201, created.text
    async with httpx.AsyncClient(
        transport=api._transport,
        base_url="http://hub.test",
        headers={"Authorization": f"Bearer {created.json()['apiKey']}"},
    ) as client:
        yield client


@pytest.fixture(autouse=True)
def _isolated_cli_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the developer's real ~/.config/portway."""
    monkeypatch.setenv("PORTWAY_CONFIG_DIR", str(tmp_path / "cli-config"))
    for name in ("PORTWAY_HUB", "PORTWAY_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert os.environ["PORTWAY_CONFIG_DIR"]
