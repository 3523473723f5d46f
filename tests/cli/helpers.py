"""Plain helpers of the CLI tests: run a command in-process, create what a test needs."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from click.testing import CliRunner, Result

from portway.cli import cli


def run(*args: str, ok: bool = True) -> Result:
    """`portway ARGS` in-process; with `ok`, asserts it exited 0."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def split_document(stdout: str) -> tuple[Any, str]:
    """The JSON document at the start of `stdout` and what follows it, checked to be printed
    as every `--json` document is: indented by two, keys in the API's order, then a newline."""
    document, end = json.JSONDecoder().raw_decode(stdout)
    assert stdout[:end] == json.dumps(document, indent=2) and stdout[end] == "\n", stdout
    return document, stdout[end + 1 :]


def json_of(result: Result) -> Any:
    """The one JSON document `result` printed on stdout (see `split_document`)."""
    document, rest = split_document(result.stdout)
    assert rest == "", result.stdout
    return document


def json_lines(result: Result) -> list[Any]:
    """The JSON objects `result` printed on stdout one per line (`--json` of streams)."""
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.stdout == "".join(json.dumps(d) + "\n" for d in documents), result.stdout
    return documents


def suffix() -> str:
    """A short random suffix that keeps names unique on a hub shared by a module's tests."""
    return uuid.uuid4().hex[:6]


def new_agent(api: httpx.Client, name: str | None = None) -> str:
    """Enrol an agent in `api`'s workspace; returns its id."""
    response = api.post("/v1/agents", json={"name": name} if name else {})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def new_tunnel(api: httpx.Client, agent_id: str, **fields: Any) -> dict[str, Any]:
    """Create a tunnel (default target localhost:5432) and return its representation."""
    body = {"target": "localhost:5432", "agentId": agent_id, **fields}
    response = api.post("/v1/tunnels", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
