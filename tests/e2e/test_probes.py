"""Protocol detection, connection strings and diagnostics with real hub, agents and servers.

One exposing agent (`portway up`) serves every tunnel of this module; a second one on the
"laptop" binds them through `POST /v1/tunnels/{id}/connect`, and each connection string the
API returns is handed to the real client (`psql`, `redis-cli`, `mariadb`, `curl`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from portway.testing.http_origin import HttpOrigin
from portway.testing.machines import Machine
from portway.testing.mariadb import find_mariadb_bin, throwaway_mariadb
from portway.testing.mongo_origin import MongoOrigin
from portway.testing.ports import closed_port, free_port
from portway.testing.postgres import PostgresCluster
from portway.testing.programs import require_program, unavailable
from portway.testing.redis import throwaway_redis
from portway.testing.tls_origin import TlsOrigin
from portway.testing.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def agents(machine: Callable[[str], Machine], api: httpx.Client) -> dict[str, Any]:
    """An exposing agent and a reaching agent, both running `portway up` (stopped after)."""
    suffix = uuid.uuid4().hex[:6]
    server, laptop = machine("probe-server"), machine("probe-laptop")
    up = server.start("up", "--name", f"server-{suffix}")
    up.wait_for("Connected to the hub.")
    laptop.start("up", "--name", f"laptop-{suffix}").wait_for("Connected to the hub.")
    return {
        "server": api.get(f"/v1/agents/server-{suffix}").json()["id"],
        "laptop": api.get(f"/v1/agents/laptop-{suffix}").json()["id"],
        "up": up,
    }


def create(api: httpx.Client, agent: str, target: str, name: str, **fields: Any) -> dict[str, Any]:
    response = api.post(
        "/v1/tunnels", json={"target": target, "agentId": agent, "name": name, **fields}
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def detected(api: httpx.Client, name: str, timeout: float = 20) -> dict[str, Any]:
    """The tunnel once the exposing agent's probe result has reached the API."""

    def found() -> dict[str, Any] | None:
        tunnel: dict[str, Any] = api.get(f"/v1/tunnels/{name}").json()
        return tunnel if tunnel["detectedProtocol"] else None

    result = wait_until(found, timeout=timeout, what=f"{name} to be probed")
    assert result is not None
    return result


def connect(api: httpx.Client, name: str, laptop: str) -> dict[str, Any]:
    """Bind the tunnel on the laptop; returns the connection once its port is bound."""
    local = free_port()
    created = api.post(f"/v1/tunnels/{name}/connect", json={"agentId": laptop, "localPort": local})
    assert created.status_code == 201, created.text
    conn: dict[str, Any] = created.json()

    def bound() -> bool:
        items = api.get(f"/v1/tunnels/{name}/connections").json()["items"]
        return any(i["id"] == conn["id"] and i["status"] == "bound" for i in items)

    wait_until(bound, timeout=10, what=f"{name} to be bound on the laptop")
    return conn


def diagnose(api: httpx.Client, name: str) -> dict[str, Any]:
    response = api.post(f"/v1/tunnels/{name}/diagnostics", timeout=60)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def steps(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in run["steps"]}


def run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_postgres_is_detected_and_its_string_works_with_psql(
    agents: dict[str, Any], api: httpx.Client, postgres_cluster: PostgresCluster | None
) -> None:
    psql = require_program("psql", package="postgresql-client")
    if postgres_cluster is None:
        unavailable("PostgreSQL server (initdb) is not installed (apt-get install postgresql)")
    assert postgres_cluster is not None
    create(
        api, agents["server"], f"127.0.0.1:{postgres_cluster.port}", "pg",
        metadata={"username": "portway", "database": "postgres"},
    )  # fmt: skip
    tunnel = detected(api, "pg")
    assert tunnel["detectedProtocol"] == "postgres" and tunnel["protocol"] == "tcp"
    assert tunnel["probe"]["tls"] is None and tunnel["probe"]["mismatch"] is None
    conn = connect(api, "pg", agents["laptop"])
    assert (
        conn["connectionString"] == f"postgresql://portway@localhost:{conn['localPort']}/postgres"
    )
    assert run(psql, conn["connectionString"], "-tAc", "select 40 + 2").strip() == "42"

    result = diagnose(api, "pg")
    assert result["ok"], result
    by_name = steps(result)
    assert [s["name"] for s in result["steps"]] == [
        "agent", "dns", "tcp", "tls", "handshake", "latency",
    ]  # fmt: skip
    assert by_name["tls"]["status"] == "skip"
    assert by_name["handshake"]["status"] == "ok" and "PostgreSQL" in by_name["handshake"]["detail"]
    assert result["latencyMs"] is not None and result["latencyMs"] > 0
    assert result["detected"]["protocol"] == "postgres"
    kept = api.get("/v1/tunnels/pg/diagnostics").json()["items"]
    assert kept[0]["id"] == result["id"]


def test_redis_with_and_without_a_password(agents: dict[str, Any], api: httpx.Client) -> None:
    server = require_program("redis-server", package="redis-server")
    cli = require_program("redis-cli", package="redis-tools")
    with throwaway_redis(server) as open_port, throwaway_redis(server, password="s3cret") as locked:
        create(api, agents["server"], f"127.0.0.1:{open_port}", "cache")
        create(api, agents["server"], f"127.0.0.1:{locked}", "locked-cache")
        assert detected(api, "cache")["detectedProtocol"] == "redis"
        locked_tunnel = detected(api, "locked-cache")
        assert locked_tunnel["detectedProtocol"] == "redis"
        assert locked_tunnel["probe"]["authRequired"] is True
        conn = connect(api, "cache", agents["laptop"])
        assert conn["connectionString"] == f"redis://localhost:{conn['localPort']}"
        assert run(cli, "-u", conn["connectionString"], "ping").strip() == "PONG"
        handshake = steps(diagnose(api, "locked-cache"))["handshake"]
        assert handshake["status"] == "ok" and "password" in handshake["detail"]


def test_mariadb_is_detected_with_its_version(agents: dict[str, Any], api: httpx.Client) -> None:
    client = require_program("mariadb", package="mariadb-client")
    binaries = find_mariadb_bin()
    if binaries is None:
        unavailable("mariadbd is not installed (apt-get install mariadb-server)")
    assert binaries is not None
    with throwaway_mariadb(binaries) as db:
        create(
            api, agents["server"], f"127.0.0.1:{db.port}", "shop", metadata={"username": db.user}
        )
        tunnel = detected(api, "shop")
        assert tunnel["detectedProtocol"] == "mysql"
        assert "MariaDB" in (tunnel["probe"]["version"] or "")
        conn = connect(api, "shop", agents["laptop"])
        url = urlsplit(conn["connectionString"])
        assert url.scheme == "mysql" and url.username == db.user
        out = run(
            client, "-h", "127.0.0.1", "-P", str(url.port), "-u", str(url.username),
            "--skip-ssl", "-N", "-e", "select 6 * 7",
        )  # fmt: skip
        assert out.strip() == "42"


@contextlib.contextmanager
def mongo_in_thread() -> Iterator[MongoOrigin]:
    """The in-test MongoDB responder on its own event loop, for agents in other processes."""
    ready = threading.Event()
    stop: list[asyncio.Event] = []
    holder: list[MongoOrigin] = []

    async def serve() -> None:
        stop.append(asyncio.Event())
        async with MongoOrigin() as origin:
            holder.append(origin)
            ready.set()
            await stop[0].wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        yield holder[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(10)
        loop.close()


def test_mongodb_is_detected_by_its_hello(agents: dict[str, Any], api: httpx.Client) -> None:
    with mongo_in_thread() as mongo:
        create(
            api, agents["server"], f"127.0.0.1:{mongo.port}", "logs", metadata={"database": "app"}
        )
        tunnel = detected(api, "logs")
        assert tunnel["detectedProtocol"] == "mongodb"
        assert any(c.lower() in ("hello", "ismaster") for c in mongo.commands)
        conn = connect(api, "logs", agents["laptop"])
        assert conn["connectionString"] == f"mongodb://localhost:{conn['localPort']}/app"


def test_http_and_https_targets(agents: dict[str, Any], api: httpx.Client) -> None:
    curl = require_program("curl")
    with HttpOrigin() as plain, TlsOrigin() as secure:
        create(api, agents["server"], f"127.0.0.1:{plain.port}", "web", protocol="http")
        create(
            api, agents["server"], f"localhost:{secure.port}", "secure-web", protocol="https",
            metadata={"tlsVerify": False},
        )  # fmt: skip
        assert detected(api, "web")["detectedProtocol"] == "http"
        secure_tunnel = detected(api, "secure-web")
        assert secure_tunnel["detectedProtocol"] == "https"
        tls = secure_tunnel["probe"]["tls"]
        assert "localhost" in tls["subject"] and tls["notAfter"] and tls["issuer"]
        for name, flags in (("web", []), ("secure-web", ["-k"])):
            conn = connect(api, name, agents["laptop"])
            scheme = "https" if name == "secure-web" else "http"
            assert conn["connectionString"] == f"{scheme}://localhost:{conn['localPort']}"
            run(curl, "-sf", "--max-time", "10", *flags, conn["connectionString"] + "/")
        secure_run = steps(diagnose(api, "secure-web"))
        assert secure_run["tls"]["status"] == "ok" and "TLS" in secure_run["tls"]["detail"]


@pytest.fixture
def refusing_port() -> Iterator[int]:
    with closed_port() as port:
        yield port


def test_diagnostics_name_what_is_wrong(
    agents: dict[str, Any],
    api: httpx.Client,
    machine: Callable[[str], Machine],
    refusing_port: int,
) -> None:
    closed = refusing_port
    create(api, agents["server"], f"127.0.0.1:{closed}", "closed-port")
    result = diagnose(api, "closed-port")
    assert not result["ok"]
    tcp = steps(result)["tcp"]
    assert tcp["status"] == "fail" and "refused" in tcp["detail"]
    assert steps(result)["handshake"]["status"] == "skip"

    with TlsOrigin(on_plaintext="alert") as secure:
        # Plain HTTP expected, TLS answers: reported, and the explicit protocol is kept.
        create(api, agents["server"], f"127.0.0.1:{secure.port}", "wrong-tls", protocol="http")
        tunnel = detected(api, "wrong-tls")
        assert tunnel["protocol"] == "http" and tunnel["detectedProtocol"] == "https"
        assert "set protocol to https" in tunnel["probe"]["mismatch"]
        handshake = steps(diagnose(api, "wrong-tls"))["handshake"]
        assert handshake["status"] == "fail" and "TLS" in handshake["detail"]

    # `portway check` prints the same steps and exits 1 when one failed.
    checker = machine("probe-checker")
    shown = checker.run("check", "closed-port", check=False)
    assert shown.returncode == 1 and "FAIL" in shown.stdout and "refused" in shown.stdout
    as_json = json.loads(checker.run("check", "closed-port", "--json", check=False).stdout)
    assert as_json["ok"] is False
    history = checker.run("check", "closed-port", "--history")
    assert "tcp:" in history.stdout

    # The exposing agent goes away: a clear step, no hang.
    agents["up"].stop()
    wait_until(
        lambda: not api.get(f"/v1/agents/{agents['server']}").json()["online"],
        timeout=20, what="the exposing agent to be offline",
    )  # fmt: skip
    offline = diagnose(api, "closed-port")
    agent_step = steps(offline)["agent"]
    assert agent_step["status"] == "fail" and "offline" in agent_step["detail"]
