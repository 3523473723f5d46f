"""What `up`, `expose`, `reach` and `join` print, with the agent runtime's loop left out.

`run_foreground` is replaced: it runs the command's `prepare` against a runtime whose reach
binds always succeed, feeds the real runtime's state callback a fixed series of state changes,
then runs `cleanup`, as Ctrl-C would. The data plane itself is tested in tests/e2e.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest

from portway.agent.runtime import AgentRuntime
from portway.cli.profile import config_path, load_profile
from portway.cli.reaching import live_reaches
from tests.cli.helpers import new_agent, new_tunnel, run, split_document, suffix

pytestmark = pytest.mark.usefixtures("logged_in")

STATES: list[tuple[str, dict[str, Any]]] = [
    ("connected", {"session": "s-1", "agent": "a-1"}),
    ("desired", {"tunnels": 1, "binds": 0}),  # not one for people
    ("target_error", {"tunnel": "db", "message": "connection refused"}),
    ("bound", {"tunnel": "db", "port": 15432}),
    ("reach_rejected", {"message": "share revoked"}),
    ("path", {"tunnel": "db", "path": "relayed"}),
    ("path", {"tunnel": "db", "path": "direct"}),
    ("path", {"tunnel": "db", "path": "direct"}),  # people hear of changes only
    ("e2e_refused", {"tunnel": "t-1", "error": "its certificate names another agent"}),
    ("not_e2e", {"tunnel": "cache", "why": "the tunnel opts out (--no-e2e)"}),
    ("disconnected", {"error": "connection reset"}),
    ("disconnected", {"reason": "replaced"}),
    ("retrying", {"in": 1.5}),
]
# What people see of STATES, on stderr.
SAID = (
    "Connected to the hub.\n"
    "Tunnel db: connection refused\n"
    "Reaching db on localhost:15432\n"
    "Connection refused by the hub: share revoked\n"
    "Connections to db are relayed by the hub.\n"
    "Connections to db go directly to the exposing agent.\n"
    "End-to-end check failed, connection closed: its certificate names another agent\n"
    "Reach to cache is not end-to-end encrypted: the tunnel opts out (--no-e2e)\n"
    "Lost the hub (connection reset).\n"
    "Lost the hub (replaced).\n"
    "Reconnecting in 1.5s…\n"
)
# What scripts see of STATES with --json, on stdout.
STATE_LINES = "".join(json.dumps({"event": event, **info}) + "\n" for event, info in STATES)


class BindingRuntime:
    """The runtime `prepare` is given: every reach binds the port it asks for."""

    async def add_reach(self, *args: Any, protocol: str) -> int:
        port: int = args[2]
        return port


@pytest.fixture(autouse=True)
def foreground(monkeypatch: pytest.MonkeyPatch) -> None:
    def run_foreground(
        runtime: AgentRuntime,
        prepare: Callable[[Any], Coroutine[Any, Any, None]] | None = None,
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        if prepare is not None:
            asyncio.run(prepare(BindingRuntime()))
        for event, info in STATES:
            runtime.on_state(event, info)
        if cleanup is not None:
            cleanup()

    for command in ("up", "expose", "reach", "join"):
        monkeypatch.setattr(f"portway.cli.{command}.run_foreground", run_foreground)


def enrolled(api: httpx.Client) -> str:
    """The line `up`, `expose` and `reach` print when they enrol this profile's agent."""
    agent_id = load_profile().agent_id
    agent = api.get(f"/v1/agents/{agent_id}").json()
    return f"Enrolled this machine as agent {agent['name']} ({agent_id}).\n"


def test_up_says_what_happens(api: httpx.Client) -> None:
    first = run("up", "--name", f"box-{suffix()}")
    agent_id = load_profile().agent_id
    serving = f"Agent {agent_id} serving; press Ctrl-C to stop.\n"
    assert (first.stdout, first.stderr) == ("", enrolled(api) + serving + SAID)
    scripted = run("up", "--json")
    assert (scripted.stdout, scripted.stderr) == (STATE_LINES, serving)


def test_expose_prints_its_tunnel(api: httpx.Client) -> None:
    name = f"ex-{suffix()}"
    shown = run("expose", "localhost:5432", "--name", name)
    tunnel = api.get(f"/v1/tunnels/{name}").json()
    assert shown.stdout == (
        f"tunnel      {name} (created)\n"
        f"id          {tunnel['id']}\n"
        "target      localhost:5432\n"
        f"protocol    {tunnel['protocol']}\n"
        "status      connecting\n"
        "public URL  -\n"
        "hub port    -\n"
        f"reach it    portway reach {name}\n"
    )
    stopped = f"Stopped serving {name}; it stays defined (status connecting).\n"
    assert shown.stderr == enrolled(api) + SAID + stopped
    scripted = run("expose", "localhost:5432", "--name", name, "--temporary", "--json")
    document, rest = split_document(scripted.stdout)
    assert document["id"] == tunnel["id"] and document["created"] is False
    assert rest == STATE_LINES
    assert scripted.stderr == f"Deleted temporary tunnel {name}.\n"
    assert api.get(f"/v1/tunnels/{name}").status_code == 404


def test_expose_no_e2e_lets_the_hub_see_reach_traffic_and_reattaching_follows_the_flag(
    api: httpx.Client,
) -> None:
    name = f"plain-{suffix()}"
    run("expose", "localhost:6379", "--name", name, "--no-e2e")
    assert api.get(f"/v1/tunnels/{name}").json()["metadata"] == {"e2e": False}
    run("expose", "localhost:6379", "--name", name)  # without the flag: end to end again
    assert api.get(f"/v1/tunnels/{name}").json()["metadata"] == {}
    run("expose", "localhost:6379", "--name", name, "--no-e2e")
    assert api.get(f"/v1/tunnels/{name}").json()["metadata"] == {"e2e": False}


def test_reach_prints_where_the_tunnel_answers(api: httpx.Client) -> None:
    tunnel = new_tunnel(api, new_agent(api), name=f"pg-{suffix()}")
    scripted = run("reach", tunnel["name"], "--port", "15999", "--json")
    document, rest = split_document(scripted.stdout)
    url = document["connectionString"]
    assert url.startswith("postgresql://") and "localhost:15999" in url
    assert document == {
        "tunnel": tunnel["name"],
        "localHost": "localhost",
        "localPort": 15999,
        "connectionString": url,
    }
    assert rest == STATE_LINES and scripted.stderr == enrolled(api)
    shown = run("reach", tunnel["id"], "--port", "15999")
    assert shown.stdout == (
        f"Reaching {tunnel['name']} on localhost:15999\n  {url}\nPress Ctrl-C to stop.\n"
    )
    assert shown.stderr == SAID
    assert live_reaches("default") == []  # cleanup removed the state file


def test_join_prints_the_local_port(api: httpx.Client) -> None:
    tunnel = new_tunnel(api, new_agent(api), name=f"shared-{suffix()}", target="localhost:6379")
    share = api.post(f"/v1/tunnels/{tunnel['id']}/shares", json={"name": "guest"}).json()
    shown = run("join", share["shareUrl"], "--port", "16379")
    assert shown.stdout == (
        f"Joined {tunnel['name']} on localhost:16379\n"
        f"  expires: {share['expiresAt']}\n"
        "Press Ctrl-C to stop.\n"
    )
    assert shown.stderr == SAID
    scripted = run("join", share["shareUrl"], "--port", "16379", "--json")
    document, rest = split_document(scripted.stdout)
    assert document == {"tunnel": tunnel["name"], "localPort": 16379}
    assert (rest, scripted.stderr) == (STATE_LINES, "")


def test_up_makes_the_agent_key_once_and_hands_it_to_the_runtime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys: list[bytes | None] = []

    def run_foreground(runtime: AgentRuntime, *args: Any, **kwargs: Any) -> None:
        keys.append(runtime.settings.identity_key)

    monkeypatch.setattr("portway.cli.up.run_foreground", run_foreground)
    run("up", "--name", f"keyed-{suffix()}")
    run("up")
    key = load_profile().agent_key
    assert key is not None and key.startswith("-----BEGIN PRIVATE KEY-----")
    assert keys == [key.encode(), key.encode()]  # made once, then reused
    assert config_path().stat().st_mode & 0o777 == 0o600
