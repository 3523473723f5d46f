"""The CLI against a real hub on loopback: output for people, --json for scripts, clean errors."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from portway.cli.profile import config_path
from portway.testing.hub import HubThread
from portway.testing.ports import free_port
from tests.cli.helpers import json_of, run

UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def shown_id(printed: str, template: str) -> str:
    """The id in `printed`, which must read as `template` with an id for `{id}` and a secret
    (shown once) for `{secret}`."""
    pattern = re.escape(template).replace(re.escape("{id}"), f"({UUID})")
    match = re.fullmatch(pattern.replace(re.escape("{secret}"), r"\S+"), printed)
    assert match, printed
    return match[1]


def test_login_saves_a_private_profile(hub: HubThread) -> None:
    result = run("login", "--hub", hub.api_url + "/", "--api-key", hub.admin_key)
    path = config_path()
    assert result.output == f"Logged in to {hub.api_url} (workspace default). Saved to {path}.\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = tomllib.loads(path.read_text())["profiles"]["default"]
    assert saved["hub"] == hub.api_url
    assert saved["api_key"] == hub.admin_key
    # The agent endpoint and its CA are pinned at login, so `portway up` needs nothing more.
    endpoint = hub.hub.dataplane.endpoint if hub.hub.dataplane else None
    assert endpoint is not None
    assert saved["agent_endpoint"] == f"127.0.0.1:{endpoint.port}"
    assert saved["agent_tls"] == "on"
    assert saved["ca_fingerprint"] == endpoint.ca_fingerprint
    assert saved["ca_certificate"].startswith("-----BEGIN CERTIFICATE-----")
    again = json_of(run("login", "--hub", hub.api_url, "--api-key", hub.admin_key, "--json"))
    assert again.pop("workspace")["name"] == "default"
    assert again == {"hub": hub.api_url, "profile": "default", "configFile": str(path)}


def test_login_rejects_wrong_key_without_saving(hub: HubThread) -> None:
    result = run("login", "--hub", hub.api_url, "--api-key", "pw_wrong", ok=False)
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == "error: API key is invalid or revoked"
    assert not config_path().exists()


@pytest.mark.usefixtures("logged_in")
def test_agents_lifecycle() -> None:
    created = json_of(run("agents", "create", "--name", "cli-agent", "--label", "box", "--json"))
    assert created["token"].startswith("pwa_")
    listed = json_of(run("agents", "ls", "--json"))
    assert "cli-agent" in [a["name"] for a in listed]
    table = run("agents", "ls").output
    assert "cli-agent" in table and created["id"] in table and "offline" in table
    shown = run("agents", "show", "cli-agent").output
    assert "label" in shown and "box" in shown
    assert json_of(run("agents", "show", created["id"], "--json"))["name"] == "cli-agent"
    removed = run("agents", "rm", "cli-agent").output
    assert removed == f"Removed agent cli-agent ({created['id']}); its token no longer works.\n"
    agent_id = shown_id(
        run("agents", "create", "--name", "cli-human").output,
        "Created agent cli-human ({id}).\nToken (shown once): pwa_{secret}\n",
    )
    assert json_of(run("agents", "rm", agent_id, "--json")) == {"deleted": agent_id}
    missing = run("agents", "show", "cli-agent", ok=False)
    assert missing.exit_code == 1 and missing.output == "error: agent not found\n"


@pytest.mark.usefixtures("logged_in")
def test_keys_lifecycle() -> None:
    created = json_of(run("keys", "create", "deploy", "--json"))
    assert created["key"].startswith("pw_")
    assert "deploy" in run("keys", "ls").output
    assert created["id"] in [k["id"] for k in json_of(run("keys", "ls", "--json"))]
    assert run("keys", "revoke", created["id"]).output == f"Revoked API key {created['id']}.\n"
    key_id = shown_id(
        run("keys", "create", "human").output,
        "Created API key human ({id}).\nKey (shown once): pw_{secret}\n",
    )
    assert json_of(run("keys", "revoke", key_id, "--json")) == {"revoked": key_id}
    # The revoked key no longer works, and says so in one line with a hint.
    denied = run("agents", "ls", "--api-key", created["key"], ok=False)
    assert denied.exit_code == 1
    assert denied.output.splitlines() == [
        "error: API key is invalid or revoked",
        "hint: check --api-key, PORTWAY_API_KEY or run 'portway login' again",
    ]


@pytest.mark.usefixtures("logged_in")
def test_workspaces_lifecycle() -> None:
    created = json_of(run("workspaces", "create", "team-cli", "--json"))
    assert "team-cli" in run("workspaces", "ls").output
    assert created["id"] in [w["id"] for w in json_of(run("workspaces", "ls", "--json"))]
    # A key of the new workspace is refused on workspace management.
    denied = run("workspaces", "ls", "--api-key", created["apiKey"], ok=False)
    assert denied.exit_code == 1 and "admin workspace" in denied.output
    removed = run("workspaces", "rm", created["id"]).output
    assert removed == f"Deleted workspace {created['id']} and everything in it.\n"
    assert "team-cli" not in run("workspaces", "ls").output
    workspace_id = shown_id(
        run("workspaces", "create", "team-human").output,
        "Created workspace team-human ({id}).\nIts API key (shown once): pw_{secret}\n",
    )
    assert json_of(run("workspaces", "rm", workspace_id, "--json")) == {"deleted": workspace_id}


def test_env_and_flags_override_profile(hub: HubThread, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTWAY_HUB", hub.api_url)
    monkeypatch.setenv("PORTWAY_API_KEY", hub.admin_key)
    assert run("keys", "ls", "--json").output.startswith("[")
    refused = run("keys", "ls", "--api-key", "pw_nope", ok=False)
    assert refused.exit_code == 1


def test_user_mistakes_are_one_line(hub: HubThread) -> None:
    cases = {
        ("agents", "ls"): "error: no hub configured: run 'portway login --hub URL --api-key KEY'",
        (
            "agents",
            "ls",
            "--hub",
            "not a url",
            "--api-key",
            "pw_x",
        ): "error: hub URL must look like",
        ("agents", "ls", "--hub", f"http://127.0.0.1:{free_port()}", "--api-key", "pw_x"): (
            "error: cannot reach the hub at"
        ),
    }
    for args, expected in cases.items():
        result = run(*args, ok=False)
        assert result.exit_code == 1, result.output
        assert result.output.startswith(expected), result.output
        assert "Traceback" not in result.output


def test_connect_alias_runs_the_same_cli() -> None:
    for name in ("portway", "connect"):
        exe = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
        assert exe, f"{name} console script is not installed"
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=30, check=True,
            env={**os.environ},
        )  # fmt: skip
        assert out.stdout.strip() == "portway, version 0.1.0"
