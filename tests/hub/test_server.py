"""How fast the hub serves tunnels after a (re)start: what `portway hub` imports before its data
plane listens, the migration step skipped on a current schema, and the data plane answering
while the API is still being built."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from portway.cli import COMMANDS, cli
from portway.hub.core.config import load_hub_config
from portway.hub.server import Hub
from portway.store import Database, migrate
from portway.store.schema import head_revision_of_files, migrate_if_needed, stored_revision
from portway.testing.hub import HubProcess, hub_flags

# Not needed to serve tunnels, and each costs a noticeable part of a second to import.
HEAVY = (
    "fastapi",
    "pydantic",
    "uvicorn",
    "rich",
    "httpx",
    "alembic",
    "portway.api.app",
    "portway.client",
    "portway.agent.runtime",
    "portway.hub.webhook_delivery",
)


def _imported_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(__import__('json').dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    loaded = set(json.loads(out))
    return [name for name in HEAVY if name in loaded]


def test_the_hub_command_path_imports_nothing_heavy() -> None:
    code = (
        "import portway.cli\n"
        "assert portway.cli.cli.get_command(None, 'hub') is not None\n"
        "import portway.hub.server\n"
    )
    assert _imported_after(code) == []


def test_help_lists_every_command_and_each_loads() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    for name in COMMANDS:
        assert f"\n  {name} " in result.output
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        assert command is not None and command.name == name
    assert cli.get_command(None, "no-such-command") is None  # type: ignore[arg-type]


def test_subcommand_help_works_through_the_lazy_group() -> None:
    for name in ("tunnels", "expose", "up"):
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("Usage: ")


def test_head_of_the_files_is_alembics_head() -> None:
    assert head_revision_of_files() == migrate.head_revision()


def _write(versions: Path, name: str, revision: str, down: str | None) -> None:
    down_text = "None" if down is None else f'"{down}"'
    (versions / name).write_text(f'revision = "{revision}"\ndown_revision = {down_text}\n')


def test_head_of_the_files_gives_up_when_unsure(tmp_path: Path) -> None:
    _write(tmp_path, "a.py", "0001", None)
    _write(tmp_path, "b.py", "0002", "0001")
    assert head_revision_of_files(tmp_path) == "0002"
    _write(tmp_path, "c.py", "0003", "0001")  # two heads
    assert head_revision_of_files(tmp_path) is None
    (tmp_path / "c.py").write_text('revision = "0003"\ndown_revision = ("0001", "0002")\n')
    assert head_revision_of_files(tmp_path) is None  # a merge: alembic decides
    (tmp_path / "c.py").write_text("revision = compute()\n")
    assert head_revision_of_files(tmp_path) is None


async def test_a_current_schema_is_not_migrated_again(database_url: str) -> None:
    db = Database.open(database_url)
    try:
        assert await stored_revision(db) == migrate.head_revision()
        assert await migrate_if_needed(db) is False
    finally:
        await db.close()


async def test_a_new_or_older_schema_is_migrated(tmp_path: Path) -> None:
    db = Database.open(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    try:
        assert await stored_revision(db) is None
        assert await migrate_if_needed(db) is True
        assert await stored_revision(db) == migrate.head_revision()
    finally:
        await db.close()
    db = Database.open(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        await migrate.upgrade(db, "0005")
        assert await migrate_if_needed(db) is True
        assert await migrate.current_revision(db) == migrate.head_revision()
        assert await migrate_if_needed(db) is False
    finally:
        await db.close()


async def _http_status(host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: nothing.localhost\r\nConnection: close\r\n\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()


async def test_the_data_plane_serves_while_the_api_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    building = threading.Event()
    release = threading.Event()
    build = Hub._api_config

    def slow_build(self: Hub, *args: object) -> object:
        building.set()
        assert release.wait(30)
        return build(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Hub, "_api_config", slow_build)
    hub = Hub(load_hub_config(hub_flags(tmp_path / "hub"), {}))
    starting = asyncio.create_task(hub.start())
    try:
        assert await asyncio.to_thread(building.wait, 30)
        assert hub.edge is not None and hub.dataplane is not None
        assert hub.bootstrap is not None and hub.bootstrap.key_file.exists()
        edge = hub.config.edge_listen
        # The loop is free: the edge answers (no route for this host) while the API builds.
        assert (await _http_status(edge.host, edge.port)).startswith(b"HTTP/1.1 ")
        assert not starting.done()
    finally:
        release.set()
        await starting
        await hub.stop()


@pytest.mark.e2e
def test_spawn_then_wait_healthy(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data")
    hub.spawn()
    try:
        hub.wait_healthy(timeout=60)
        assert hub.healthy()
        assert hub.admin_key.startswith("pw_")
    finally:
        assert hub.stop() == 0, hub.stderr()
