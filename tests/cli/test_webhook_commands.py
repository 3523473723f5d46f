"""`portway webhooks` and `portway events` against a real hub and a real webhook receiver."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
from click.testing import Result

from portway.testing.waiting import wait_until
from tests.cli.helpers import new_agent, new_tunnel, run, suffix
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.usefixtures("logged_in")


@pytest.fixture(scope="module")
def hub_flags() -> dict[str, str]:
    # The receiver listens on loopback, so this hub allows private webhook URLs.
    return {"webhooks_allow_private": "on"}


def test_webhook_lifecycle() -> None:
    with Receiver() as receiver:
        created = run(
            "webhooks", "create", receiver.url, "--event", "tunnel.created",
            "--event", "tunnel.deleted", "--description", "CI",
        ).output  # fmt: skip
        assert "Signing secret (shown once): whsec_" in created
        hook_id = created.split()[2]
        receiver.secret = created.rsplit(" ", 1)[-1].strip()
        listed = run("webhooks", "ls").output
        assert hook_id in listed and receiver.url in listed and "enabled" in listed
        assert receiver.secret not in listed
        shown = run("webhooks", "show", hook_id).output
        assert "tunnel.created, tunnel.deleted" in shown and receiver.secret[:14] in shown
        assert receiver.secret not in shown
        as_json = json.loads(run("webhooks", "show", hook_id, "--json").output)
        assert as_json["description"] == "CI" and "secret" not in as_json

        queued = json.loads(run("webhooks", "test", hook_id, "--json").output)
        assert queued["eventType"] == "webhook.test"
        wait_until(receiver.delivered, timeout=20, what="the test delivery")
        [got] = receiver.requests()
        assert got.verified and got.document["type"] == "webhook.test"
        assert got.message_id == queued["id"]

        def settled() -> list[dict[str, Any]]:
            items = json.loads(run("webhooks", "deliveries", hook_id, "--json").output)
            return [d for d in items if d["status"] == "succeeded"]

        wait_until(settled, timeout=20, what="a succeeded delivery")
        table = run("webhooks", "deliveries", hook_id).output
        assert "webhook.test" in table and "succeeded" in table and "200 in" in table

        rotated = run("webhooks", "rotate-secret", hook_id).output
        new_secret = rotated.rsplit(" ", 1)[-1].strip()
        assert new_secret.startswith("whsec_") and new_secret != receiver.secret
        assert "disabled" in run("webhooks", "disable", hook_id).output
        assert json.loads(run("webhooks", "enable", hook_id, "--json").output)["enabled"]
        assert run("webhooks", "rm", hook_id).output == f"Removed webhook {hook_id}.\n"
        gone = run("webhooks", "show", hook_id, ok=False)
        assert gone.exit_code == 1 and gone.output == "error: webhook not found\n"


def test_create_refuses_bad_input() -> None:
    bad = run("webhooks", "create", "ftp://example.com/", ok=False)
    assert bad.exit_code == 1 and bad.output.startswith("error: url:")
    unknown = run("webhooks", "create", "https://8.8.8.8/", "--event", "nope", ok=False)
    assert unknown.exit_code == 1 and "events" in unknown.output


def test_events_list_and_filter(api: httpx.Client) -> None:
    name = "ev-" + suffix()
    tunnel = new_tunnel(api, new_agent(api), name=name)
    api.delete(f"/v1/tunnels/{tunnel['id']}")
    latest = json.loads(run("events", "--limit", "2", "--json").output)
    assert [e["type"] for e in latest] == ["tunnel.created", "tunnel.deleted"]
    assert latest[0]["objectId"] == tunnel["id"]
    text = run("events", "--type", "tunnel.deleted", "--limit", "1").output
    assert "tunnel.deleted" in text and tunnel["id"] in text and name in text
    assert "(deleted)" in text
    after = json.loads(run("events", "--after", str(latest[0]["seq"]), "--json").output)
    assert [e["seq"] for e in after] == [latest[1]["seq"]]
    assert run("events", "--after", str(latest[1]["seq"])).output == "(none)\n"
    bad = run("events", "--type", "tunnel.exploded", ok=False)
    assert bad.exit_code == 2


def test_events_follow(api: httpx.Client) -> None:
    [last] = api.get("/v1/events", params={"limit": 1}).json()["items"] or [{"seq": 0}]
    outcome: dict[str, Result] = {}

    def follow() -> None:
        outcome["result"] = run(
            "events", "--follow", "--after", str(last["seq"]), "--count", "2", "--json",
            "--type", "tunnel.created", ok=False,
        )  # fmt: skip

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    first = new_tunnel(api, new_agent(api), name="follow-" + suffix())
    api.delete(f"/v1/tunnels/{first['id']}")  # filtered out
    second = new_tunnel(api, new_agent(api), name="follow-" + suffix())
    watcher.join(timeout=30)
    assert not watcher.is_alive(), "portway events --follow did not see both tunnels"
    result = outcome["result"]
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [(e["type"], e["objectId"]) for e in lines] == [
        ("tunnel.created", first["id"]),
        ("tunnel.created", second["id"]),
    ]
